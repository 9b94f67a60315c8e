"""The noise-sensitivity study in one command (see wnrl/experiments/study.py and study_games.py).

Trains each agent on each env for S seeds (at most --parallel niced processes; finished
runs are skipped, interrupted ones resumed; seeds outermost, so a partial study stays
balanced), reads the curves back from TensorBoard, measures update costs and batch norm's
noise against minibatch size, and writes <out>/<env>/figure.png, summary.md and
summary.json. With several envs it also writes <out>/games.png, games.md and games.json:
per-game curves, IQM across games with stratified-bootstrap intervals, and the
probability of improvement of one agent over another.

    python scripts/compare.py --env CartPole-v1 --seeds 5 --steps 50000
    python scripts/compare.py --env Acrobot-v1 --no-train   # only re-read existing runs
    python scripts/compare.py --env minatar/breakout minatar/seaquest minatar/space_invaders \
        --seeds 3 --steps 1000000 --out docs/results/minatar
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from wnrl.experiments.study import DEFAULT_AGENTS, StudyOptions, run_study, train_runs
from wnrl.experiments.study_games import plan_study, write_games_summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    p.add_argument("--env", required=True, nargs="+",
                   help="CartPole-v1, Acrobot-v1, pong, minatar/breakout, ... (one or more)")
    p.add_argument("--agents", nargs="+", default=list(DEFAULT_AGENTS))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..S-1")
    p.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    p.add_argument("--configs-dir", type=Path, default=Path("configs"))
    p.add_argument("--runs-dir", type=Path, default=Path("runs/study"))
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    p.add_argument("--parallel", type=int, default=2, help="training processes at a time")
    p.add_argument("--nice", type=int, default=15, help="niceness of training processes")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                   help="train missing runs (--no-train: only read existing ones)")
    p.add_argument("--sweep-sizes", type=int, nargs="*", default=[32, 64, 256, 1024])
    p.add_argument("--timing-repeats", type=int, default=20)
    p.add_argument("--cnn-cost", action=argparse.BooleanOptionalAction, default=True,
                   help="also time Nature-CNN updates (Atari shape) per agent")
    p.add_argument("--threads", type=int, default=1, help="torch threads for measurements")
    p.add_argument("--improvement", nargs=2, default=["wn_dqn", "dqn"], metavar=("X", "Y"),
                   help="several envs: report P(X > Y), the probability of improvement")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for every training run")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.steps < 1 or args.parallel < 1:
        p.error("--seeds, --steps and --parallel must be >= 1")
    import torch

    torch.set_num_threads(args.threads)
    opt = StudyOptions(
        env_id=args.env[0], agents=tuple(args.agents), seeds=tuple(range(args.seeds)),
        total_steps=args.steps, configs_dir=args.configs_dir, runs_dir=args.runs_dir,
        out_dir=args.out, overrides=tuple(args.overrides), parallel=args.parallel,
        nice=args.nice, train=args.train, sweep_sizes=tuple(args.sweep_sizes),
        timing_repeats=args.timing_repeats, cnn_cost=args.cnn_cost,
        command="python scripts/compare.py " + shlex.join(sys.argv[1:] if argv is None
                                                           else argv))
    try:
        specs = plan_study(args.env, opt)
        if opt.train:
            failed = train_runs(specs, opt.parallel, opt.nice)
            if failed:
                print(f"{len(failed)} run(s) failed; summarizing the finished ones")
        docs = [run_study(dataclasses.replace(opt, env_id=env, train=False)) for env in args.env]
        if len(args.env) > 1:
            write_games_summary(docs, opt, tuple(args.improvement))
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
