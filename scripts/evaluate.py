#!/usr/bin/env python
"""Score a checkpoint: whole games, raw score, epsilon 0.001.

    python scripts/evaluate.py runs/<run-name>/checkpoints/ckpt_000001000000.pt \
        [--episodes 30] [--epsilon 0.001] [--seed 0] [--json scores.json]
        [--video game.mp4 | --video game.gif --video-max-frames 400]
        [--video-view game|agent] [--video-scale 2]

Same as the `wnrl-evaluate` console command.
"""

import sys

from wnrl.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
