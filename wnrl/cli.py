"""Command-line entry points (`wnrl-train`, `wnrl-evaluate`; the scripts call these).

Every user error (bad config key or value, unknown game, missing or
incompatible checkpoint, existing run directory) ends with one line on
stderr naming the problem and exit code 2, and touches no existing file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from wnrl.checkpoint import CheckpointError
from wnrl.config import ConfigError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _guard(main: Callable[[], int]) -> int:
    try:
        return main()
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def train_main(argv: Sequence[str] | None = None) -> int:
    p = _Parser(prog="wnrl-train", description="Train a DQN agent (see configs/).")
    p.add_argument("--config", help="YAML config file (configs/*.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.add_argument("--force", action="store_true",
                   help="reuse an existing run directory (its checkpoints are kept)")
    p.add_argument("--seeds", metavar="SEEDS",
                   help="train one run per seed in one process, e.g. 0-7 or 0,3,5 "
                        "(= train.seeds; with learner.lr=[a,b] the runs are seeds x rates)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. learner.lr=3e-4")
    args = p.parse_intermixed_args(argv)  # options may come after key=value overrides
    if args.resume and args.force:
        p.error("--resume and --force do not go together")
    if args.resume and args.seeds:
        p.error("--resume and --seeds do not go together (a group resumes whole)")

    def run() -> int:
        from wnrl.group.members import parse_seeds
        from wnrl.group.runner import resume, start  # a group, or else the solo runner

        if args.resume:
            return resume(args.resume, args.overrides)
        if not args.config:
            raise ConfigError("--config is required (e.g. --config configs/pong_wn_dqn.yaml)")
        seeds = [] if args.seeds is None else [
            f"train.seeds=[{','.join(map(str, parse_seeds(args.seeds)))}]"]
        return start(args.config, [*args.overrides, *seeds], force=args.force)

    return _guard(run)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    p = _Parser(prog="wnrl-evaluate", description="Score a checkpoint (whole games, raw score).")
    p.add_argument("checkpoint", help="checkpoint file, or a run directory (latest checkpoint)")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--epsilon", type=float, default=None, help="default: the config's (0.001)")
    p.add_argument("--seed", type=int, default=0,
                   help="evaluation seed stream (never a training run's env seeds)")
    p.add_argument("--video", metavar="PATH",
                   help="film one more game: PATH.mp4 (60 fps) or PATH.gif (15 fps)")
    p.add_argument("--video-view", choices=("game", "agent"), default="game",
                   help="game: the RGB screen (default); agent: the 84x84 grayscale input")
    p.add_argument("--video-max-frames", type=int, default=None, metavar="N",
                   help="stop the filmed game after N frames (e.g. 400 for a short GIF)")
    p.add_argument("--video-scale", type=int, default=1, metavar="K",
                   help="upscale frames K times (default 1: the native 210x160)")
    p.add_argument("--json", metavar="PATH", help="write the scores as JSON")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        p.error(f"--epsilon must be in [0, 1], got {args.epsilon}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.video_max_frames is not None and args.video_max_frames < 1:
        p.error(f"--video-max-frames must be >= 1, got {args.video_max_frames}")
    if args.video_scale < 1:
        p.error(f"--video-scale must be >= 1, got {args.video_scale}")

    def run() -> int:
        from wnrl.evaluate import VideoOptions, evaluate_checkpoint

        video = None if args.video is None else VideoOptions(
            args.video, args.video_view, args.video_max_frames, args.video_scale)
        def skipped(path: Path, why: str) -> None:
            print(f"skipped unreadable checkpoint {path.name}: {why}", file=sys.stderr)

        res, filmed = evaluate_checkpoint(args.checkpoint, args.episodes, args.epsilon,
                                          args.seed, video, args.json, on_skip=skipped)
        print(res.table())
        if filmed is not None:
            print(filmed.line())
        return 0

    return _guard(run)


def _entry(main: Callable[[Sequence[str] | None], int]) -> Callable[[], None]:
    return lambda: sys.exit(main(None))


train = _entry(train_main)
evaluate = _entry(evaluate_main)
