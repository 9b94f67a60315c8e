"""`scripts/fair_study.py`: train what the fair study lacks, record it, write its report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wnrl import atomic
from wnrl.experiments.fair import (
    FairProtocol,
    Recorder,
    cross_rates,
    env_steps,
    import_first_study,
    plan_cross,
    plan_main,
    plan_tuning,
    random_scores,
    rate_tag,
)
from wnrl.experiments.fair_report import (
    choose_rates,
    compare,
    comparison_markdown,
    plot_curves,
    plot_profiles,
    plot_tuning,
    tuning_markdown,
)
from wnrl.experiments.ledger import Ledger


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fair_study.py", description=(
        "The fair study: tuned learning rates, more seeds, a ledger of finished runs."))
    p.add_argument("--phase", choices=["tune", "main", "all"], default="all",
                   help="which runs to train (default: all; the report covers everything)")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                   help="train missing runs (--no-train: only report from the ledger)")
    p.add_argument("--plan", action="store_true",
                   help="print the groups left to train and their env steps, then exit")
    p.add_argument("--out", type=Path, default=Path("docs/results/minatar/fair"))
    p.add_argument("--runs-dir", type=Path, default=Path("runs/fair"))
    p.add_argument("--configs-dir", type=Path, default=Path("configs"))
    p.add_argument("--first-study", type=Path, default=Path("docs/results/minatar"),
                   help="the first study's results (its runs count as seeds 0-2 at the "
                        "shared rate); '' to leave them out")
    p.add_argument("--parallel", type=int, default=2, help="group processes at a time")
    p.add_argument("--groups", type=int, default=None,
                   help="train at most the first N groups of each phase's plan, then "
                        "report (for a session that must finish what it starts: run "
                        "directories do not outlive it; default: every group)")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--games", nargs="+", default=None)
    p.add_argument("--agents", nargs="+", default=None)
    p.add_argument("--rates", nargs="+", type=float, default=None, help="the tuning grid")
    p.add_argument("--tune-seeds", nargs="+", type=int, default=None)
    p.add_argument("--tune-steps", type=int, default=None)
    p.add_argument("--seeds", type=int, default=None, help="comparison seeds 0..S-1")
    p.add_argument("--steps", type=int, default=None, help="env steps per comparison run")
    p.add_argument("--late-seeds", type=int, default=None,
                   help="seeds of the agents trained last (bn_dqn, wn_mobn_dqn), the "
                        "pre-registered cut (default 3; --late-seeds 5: all of --seeds)")
    p.add_argument("--cross-seeds", type=int, default=None,
                   help="seeds of the rate check (dqn, wn_dqn, ln_dqn each at the others' "
                        "tuned rates, trained last; default 3; 0: no check)")
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    return p


def protocol_of(args: argparse.Namespace) -> FairProtocol:
    given = {k: v for k, v in {
        "games": args.games and tuple(args.games), "agents": args.agents and tuple(args.agents),
        "rates": args.rates and tuple(args.rates),
        "tune_seeds": args.tune_seeds and tuple(args.tune_seeds),
        "tune_steps": args.tune_steps, "seeds": args.seeds and tuple(range(args.seeds)),
        "steps": args.steps, "eval_episodes": args.eval_episodes,
        "late_seeds": args.late_seeds}.items() if v is not None}
    for key, value in (("tune-steps", args.tune_steps), ("steps", args.steps),
                       ("late-seeds", args.late_seeds),
                       ("eval-episodes", args.eval_episodes), ("seeds", args.seeds),
                       ("parallel", args.parallel), ("groups", args.groups)):
        if value is not None and value < 1:
            raise ValueError(f"--{key} must be >= 1")
    if args.cross_seeds is not None:
        if args.cross_seeds < 0:
            raise ValueError("--cross-seeds must be >= 0 (0: no rate check)")
        given["cross_seeds"] = args.cross_seeds or None
    if "rates" in given and (min(given["rates"]) <= 0 or
                             len(set(given["rates"])) != len(given["rates"])):
        raise ValueError("--rates must be distinct rates > 0")
    return FairProtocol(**given, configs_dir=args.configs_dir, runs_dir=args.runs_dir)


def report(ledger: Ledger, p: FairProtocol, out: Path, random: dict[str, float],
           tuning: dict[str, Any], reps: int) -> dict[str, Any]:
    """Write <out>/fair.json, fair.md and the figures from the ledger, the random policy's
    scores and the tuning's `choose_rates`."""
    comparisons = {}
    if tuning["chosen"]:
        comparisons["tuned rates"] = compare(ledger, p, tuning["chosen"], random, reps=reps)
    comparisons["shared rate"] = compare(ledger, p, {a: p.shared_rate for a in p.agents},
                                         random, reps=reps)
    checked = sorted({lr for rates in cross_rates(p, tuning["chosen"]).values()
                      for lr in rates})
    for lr in checked:  # the rate check: the first agents, all at one rate
        comparisons[f"rate check at lr {rate_tag(lr)}"] = compare(
            ledger, p, {a: lr for a in p.agents if a in p.first_agents}, random, reps=reps)
    doc = {"protocol": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(p).items()},
           "random_score": random, "tuning": tuning, "comparisons": comparisons}
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "fair.json", json.dumps(doc, indent=1) + "\n")
    md = ["# Fair study: tables (written by scripts/fair_study.py from runs.jsonl)\n",
          f"## Tuning: across-game IQM of normalized AUC [95% CI], {p.tune_steps:,} env "
          f"steps, seeds {list(p.tune_seeds)}\n", tuning_markdown(tuning, p.rates)]
    md += [comparison_markdown(c, name) for name, c in comparisons.items()]
    atomic.write_text(out / "fair.md", "\n".join(md))
    if tuning["table"]:
        plot_tuning(out / "tuning.png", tuning)
    plot_profiles(out / "profiles.png", comparisons)
    for name, cmp in comparisons.items():
        if cmp.get("rates"):
            plot_curves(out / f"curves_{name.replace(' ', '_')}.png", ledger, p, cmp["rates"],
                        f"Main runs, {name}: mean training return [95% bootstrap band]")
    print(f"wrote {out / 'fair.md'}, fair.json and figures")
    return doc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        p = protocol_of(args)
        ledger = Ledger.load(args.out / "runs.jsonl")
        if str(args.first_study) not in ("", "."):
            import_first_study(ledger, p, args.first_study)
        rec = Recorder(p, ledger)
        rec.record(plan_tuning(p, ledger))  # finished runs not yet in the ledger
        tune_specs = plan_tuning(p, ledger)
        if args.plan:
            print(f"tuning: {len(tune_specs)} groups, {env_steps(tune_specs):,} env steps left")
        from wnrl.experiments.study import train_runs

        if args.train and args.phase in ("tune", "all") and not args.plan:
            failed = train_runs(tune_specs[:args.groups], args.parallel, args.nice,
                                on_done=lambda s: rec.record([s]))
            if failed:
                print(f"{len(failed)} tuning group(s) failed; see their logs", file=sys.stderr)
        random = random_scores(p)
        tuning = choose_rates(ledger, p, random, args.reps)
        chosen = tuning["chosen"]
        rates = {a: (chosen[a], p.shared_rate) if a in chosen else (p.shared_rate,)
                 for a in p.agents}
        def plan() -> list:
            return plan_main(p, rates, ledger) + plan_cross(p, chosen, ledger)

        rec.record(plan())  # finished runs not yet in the ledger
        main_specs = plan()
        if args.plan:
            for s in main_specs:
                print(f"  {s.label}: seeds {list(s.seeds)}")
            print(f"main: {len(main_specs)} groups, {env_steps(main_specs):,} env steps left")
            return 0
        if args.train and args.phase in ("main", "all"):
            failed = train_runs(main_specs[:args.groups], args.parallel, args.nice,
                                on_done=lambda s: rec.record([s]))
            if failed:
                print(f"{len(failed)} main group(s) failed; see their logs", file=sys.stderr)
        report(ledger, p, args.out, random, tuning, args.reps)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
