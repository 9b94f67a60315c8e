"""The fair study's statistics, from its ledger alone (see `wnrl.experiments.fair`).

- `choose_rates`: per agent and rate, the across-game IQM of normalized AUC over the
  tuning runs (stratified-bootstrap 95% interval); the chosen rate maximizes it.
- `compare`: the main runs of each agent at one rate per agent (its tuned rate, or the
  shared rate): IQM of normalized final return, AUC and evaluation-phase return (over the
  agents with an evaluated run on every game, and only those runs) under two normalizers,
  P(X > wn_dqn) for every other agent, performance profiles and per-game means.
  Normalizers, per game, with `random` the uniformly random policy's mean return:
    best run   (x - random) / (best final return of any main run on the game - random)
    dqn mean   (x - random) / (mean final return of `dqn` at the shared rate - random)
  P(X > Y) compares raw returns within a game, so it does not depend on the normalizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wnrl.experiments.fair import MAIN, TUNE, FairProtocol, rate_tag
from wnrl.experiments.ledger import Ledger, RunRecord
from wnrl.experiments.study_games import normalize, probability_of_improvement, stratified_iqm
from wnrl.stats import interval, resample

Scores = dict[str, dict[str, np.ndarray]]  # game -> agent -> float[runs]
TAUS = np.linspace(0.0, 1.5, 61)  # thresholds of the performance profiles


def _scores(records: dict[str, dict[str, list[RunRecord]]], field: str) -> Scores:
    def value(r: RunRecord) -> float | None:
        return r.eval_mean if field == "eval" else getattr(r, field)

    return {g: {a: np.array([v for r in rs if (v := value(r)) is not None], np.float64)
                for a, rs in per.items()} for g, per in records.items()}


def choose_rates(ledger: Ledger, p: FairProtocol, random: dict[str, float],
                 reps: int = 2000) -> dict[str, Any]:
    """Per agent: {rate: {iqm, iqm_ci, runs, ...}} of normalized tuning AUC, and the chosen
    rate (the highest IQM), made only once the agent has every rate on every game with
    every tuning seed. Normalizer: per game, the best final return of any tuning run."""
    best = {g: max((r.final for r in ledger.select(TUNE, g, total_steps=p.tune_steps)),
                   default=random[g] + 1.0) for g in p.games}
    table: dict[str, dict[str, Any]] = {}
    chosen: dict[str, float] = {}
    for agent in p.agents:
        per_rate: dict[str, Any] = {}
        for lr in p.rates:
            recs = {g: [r for r in ledger.select(TUNE, g, agent, lr, p.tune_steps)
                        if r.seed in p.tune_seeds] for g in p.games}
            if not all(recs.values()):
                continue
            auc = normalize({g: {agent: np.array([r.auc for r in rs])} for g, rs in recs.items()},
                            random, best)
            est = stratified_iqm(auc, reps)[agent]
            final = normalize({g: {agent: np.array([r.final for r in rs])}
                               for g, rs in recs.items()}, random, best)
            per_rate[rate_tag(lr)] = est | {
                "final_iqm": stratified_iqm(final, reps)[agent]["iqm"], "lr": lr,
                "auc_per_game": {g: [r.auc for r in rs] for g, rs in recs.items()}}
        if per_rate:
            table[agent] = per_rate
        complete = len(per_rate) == len(p.rates) and all(
            len(e["auc_per_game"][g]) == len(p.tune_seeds) for e in per_rate.values()
            for g in p.games)
        if complete:  # every rate on every game with every seed: the choice is made
            chosen[agent] = max(per_rate.values(), key=lambda e: e["iqm"])["lr"]
    return {"table": table, "chosen": chosen, "normalizer_high": best,
            "tune_steps": p.tune_steps, "seeds": list(p.tune_seeds)}


def performance_profile(norm: Scores, agent: str, reps: int = 2000,
                        seed: int = 0) -> dict[str, Any]:
    """Fraction of runs whose normalized score exceeds each threshold in TAUS, games
    weighted equally, with a 95% stratified-bootstrap band (Agarwal et al. 2021, Fig. 5)."""
    rng = np.random.default_rng(seed)
    per_game = [np.asarray(norm[g][agent], np.float64) for g in norm]
    point = np.mean([(x[:, None] > TAUS).mean(axis=0) for x in per_game], axis=0)
    boot = np.mean([(resample(x, rng, reps)[..., None] > TAUS).mean(axis=1)
                    for x in per_game], axis=0)  # [reps, taus]
    lo, hi = interval(boot)
    return {"tau": TAUS.tolist(), "fraction": point.tolist(), "lo": lo.tolist(),
            "hi": hi.tolist()}


def compare(ledger: Ledger, p: FairProtocol, rates: dict[str, float],
            random: dict[str, float], reference: str = "wn_dqn",
            reps: int = 2000) -> dict[str, Any]:
    """Statistics of the main runs with agent a at rates[a] (see the module doc). Agents
    missing a game are listed in `incomplete` and left out of the aggregates."""
    recs = {g: {a: ledger.select(MAIN, g, a, lr, p.steps) for a, lr in rates.items()}
            for g in p.games}
    agents = [a for a in rates if all(recs[g][a] for g in p.games)]
    out: dict[str, Any] = {"rates": {a: rates[a] for a in agents},
                           "incomplete": [a for a in rates if a not in agents],
                           "runs": {g: {a: len(recs[g][a]) for a in rates} for g in p.games}}
    if not agents:
        return out
    recs = {g: {a: recs[g][a] for a in agents} for g in p.games}
    final, auc, ev = _scores(recs, "final"), _scores(recs, "auc"), _scores(recs, "eval")
    all_main = [r.final for r in ledger.select(MAIN, total_steps=p.steps)]
    highs = {"best run": {g: max(r.final for r in ledger.select(MAIN, g, total_steps=p.steps))
                          for g in p.games}}
    dqn = {g: ledger.select(MAIN, g, "dqn", p.shared_rate, p.steps) for g in p.games}
    if all(dqn.values()):
        highs["dqn mean"] = {g: float(np.mean([r.final for r in dqn[g]])) for g in p.games}
    evaluated = [a for a in agents if all(len(ev[g][a]) for g in p.games)]
    ev_iqm = {g: {a: ev[g][a] for a in evaluated} for g in p.games}  # eval IQM's scores
    out["normalizers"] = {}
    for name, high in highs.items():
        entry: dict[str, Any] = {"high": high, "final": stratified_iqm(
            normalize(final, random, high), reps), "auc": stratified_iqm(
            normalize(auc, random, high), reps)}
        if evaluated:
            entry["eval"] = stratified_iqm(normalize(ev_iqm, random, high), reps)
        out["normalizers"][name] = entry
    out["profiles"] = {a: performance_profile(normalize(final, random, highs["best run"]), a,
                                              reps) for a in agents}
    if reference in agents:
        out["improvement"] = {a: {"final": probability_of_improvement(final, a, reference, reps),
                                  "auc": probability_of_improvement(auc, a, reference, reps)}
                              for a in agents if a != reference}
    out["per_game"] = {g: {a: {"final_mean": float(final[g][a].mean()),
                               "final_per_seed": final[g][a].tolist(),
                               "auc_mean": float(auc[g][a].mean()),
                               "eval_mean": float(ev[g][a].mean()) if len(ev[g][a]) else None,
                               "eval_runs": int(len(ev[g][a]))} for a in agents}
                       for g in p.games}
    out["noise"] = {a: _mean_noise([r for g in p.games for r in recs[g][a]]) for a in agents}
    out["main_runs"] = len(all_main)
    return out


def _mean_noise(records: Sequence[RunRecord]) -> dict[str, Any]:
    """Mean of each `noise/` diagnostic over the runs that logged it, and how many did."""
    logged = [r.noise for r in records if r.noise]
    keys = sorted({k for n in logged for k in n})
    out: dict[str, Any] = {"runs": len(logged)}
    for k in keys:
        vals = [n[k] for n in logged if n.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def _iv(est: dict[str, Any], fmt: str = ".2f") -> str:
    lo, hi = est["iqm_ci"]
    return f"{est['iqm']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _eval_cell(est: dict[str, Any] | None) -> str:
    """An evaluation IQM with its number of runs (not every run has an evaluation phase)."""
    return "n/a" if est is None else f"{_iv(est)}, n={est['runs']}"


def tuning_markdown(tuning: dict[str, Any], rates: Sequence[float]) -> str:
    head = "| agent | " + " | ".join(f"lr {rate_tag(r)}" for r in rates) + " | chosen |"
    rows = [head, "|---" * (len(rates) + 2) + "|"]
    for agent, per in tuning["table"].items():
        cells = []
        for r in rates:
            e = per.get(rate_tag(r))
            cell = "n/a" if e is None else _iv(e)
            cells.append(f"**{cell}**" if e is not None and e["lr"] == tuning["chosen"][agent]
                         else cell)
        rows.append(f"| {agent} | " + " | ".join(cells) +
                    f" | {rate_tag(tuning['chosen'][agent])} |")
    return "\n".join(rows) + "\n"


def comparison_markdown(cmp: dict[str, Any], title: str) -> str:
    lines = [f"## {title}\n"]
    if cmp.get("incomplete"):
        lines.append("Not yet aggregated (a game has no run): "
                     + ", ".join(f"`{a}`" for a in cmp["incomplete"]) + "\n")
    if "normalizers" not in cmp:
        return "\n".join(lines) + "\n"
    names = list(cmp["normalizers"])
    head = ["agent", "rate", "runs"]
    for n in names:
        head += [f"final IQM ({n})", f"AUC IQM ({n})", f"eval IQM ({n})"]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for a, lr in cmp["rates"].items():
        row = [f"`{a}`", rate_tag(lr), str(sum(cmp["runs"][g][a] for g in cmp["runs"]))]
        for n in names:
            e = cmp["normalizers"][n]
            row += [_iv(e["final"][a]), _iv(e["auc"][a]),
                    _eval_cell(e.get("eval", {}).get(a))]
        lines.append("| " + " | ".join(row) + " |")
    if "improvement" in cmp:
        lines += ["", "| X | P(X > wn_dqn), final [95% CI] | P, AUC | per game (final) |",
                  "|---|---|---|---|"]
        for a, imp in cmp["improvement"].items():
            f, u = imp["final"], imp["auc"]
            per = ", ".join(f"{g.split('/')[-1]} {v['p']:.2f}" for g, v in f["per_game"].items())
            lines.append(f"| `{a}` | {f['p']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}] | "
                         f"{u['p']:.2f} [{u['ci'][0]:.2f}, {u['ci'][1]:.2f}] | {per} |")
    lines += ["", "| agent | runs with diagnostics | Q noise (std / mean \\|Q\\|) | "
              "greedy-action flips | train-eval gap |", "|---|---|---|---|---|"]
    for a, n in cmp.get("noise", {}).items():
        def pct(k: str, n: dict = n) -> str:
            return "n/a" if n.get(k) is None else f"{100 * n[k]:.2f}%"

        gap = "n/a" if n.get("train_eval_gap") is None else f"{n['train_eval_gap']:.3g}"
        lines.append(f"| `{a}` | {n['runs']} | {pct('q_std_rel')} | {pct('action_flip_frac')}"
                     f" | {gap} |")
    games = list(cmp["per_game"])
    lines += ["", "| agent | " + " | ".join(f"{g.split('/')[-1]} final (eval)" for g in games)
              + " |", "|---" * (len(games) + 1) + "|"]
    for a in cmp["rates"]:
        cells = []
        for g in games:
            e = cmp["per_game"][g][a]
            ev = "" if e["eval_mean"] is None else f" ({e['eval_mean']:.1f}, n={e['eval_runs']})"
            cells.append(f"{e['final_mean']:.1f}{ev}")
        lines.append(f"| `{a}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


COLORS = {"dqn": "tab:gray", "wn_dqn": "tab:blue", "ln_dqn": "tab:purple", "bn_dqn": "tab:red",
          "wn_mobn_dqn": "tab:green"}


def plot_tuning(path: Any, tuning: dict[str, Any]) -> None:
    """Across-game IQM of normalized AUC against the learning rate, one line per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for agent, per in tuning["table"].items():
        es = sorted(per.values(), key=lambda e: e["lr"])
        x = [e["lr"] for e in es]
        ax.plot(x, [e["iqm"] for e in es], "o-", color=COLORS.get(agent, "k"), label=agent)
        ax.fill_between(x, [e["iqm_ci"][0] for e in es], [e["iqm_ci"][1] for e in es],
                        color=COLORS.get(agent, "k"), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("IQM of normalized AUC")
    ax.set_title(f"Tuning: {tuning['tune_steps']:,} env steps, seeds {tuning['seeds']}, "
                 "3 games", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_profiles(path: Any, comparisons: dict[str, dict[str, Any]]) -> None:
    """Performance profiles (best-run normalizer) of each comparison, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {k: c for k, c in comparisons.items() if "profiles" in c}
    if not done:
        return
    fig, axes = plt.subplots(1, len(done), figsize=(6 * len(done), 4), layout="constrained",
                             squeeze=False)
    for ax, (title, cmp) in zip(axes[0], done.items()):
        for a, prof in cmp["profiles"].items():
            c = COLORS.get(a, "k")
            ax.plot(prof["tau"], prof["fraction"], color=c,
                    label=f"{a} (lr {rate_tag(cmp['rates'][a])})")
            ax.fill_between(prof["tau"], prof["lo"], prof["hi"], color=c, alpha=0.15)
        ax.set_xlabel("normalized final return τ (best run = 1)")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path: Any, ledger: Ledger, p: FairProtocol, rates: dict[str, float],
                title: str) -> bool:
    """Per game, the mean learning curve of each agent at rates[agent] over its main runs
    that kept a curve (first-study runs did not), with a 95% bootstrap band. Returns False
    (and writes nothing) when no run has a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wnrl.experiments.study_plot import bootstrap_band

    curves = {g: {a: np.array([r.curve for r in ledger.select(MAIN, g, a, lr, p.steps)
                               if r.curve is not None]) for a, lr in rates.items()}
              for g in p.games}
    if not any(len(c) for per in curves.values() for c in per.values()):
        return False
    fig, axes = plt.subplots(1, len(p.games), figsize=(5 * len(p.games), 3.8),
                             layout="constrained", squeeze=False)
    for ax, g in zip(axes[0], p.games):
        for a, c in curves[g].items():
            if not len(c):
                continue
            x = np.linspace(0, p.steps, c.shape[1] + 1)[1:]
            color = COLORS.get(a, "k")
            ax.plot(x, c.mean(axis=0), color=color,
                    label=f"{a} lr {rate_tag(rates[a])} (n={len(c)})")
            if len(c) > 1:
                lo, hi = bootstrap_band(c)
                ax.fill_between(x, lo, hi, color=color, alpha=0.15)
        ax.set_title(g, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("training return")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
