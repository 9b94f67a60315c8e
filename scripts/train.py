#!/usr/bin/env python
"""Train a DQN agent.

    python scripts/train.py --config configs/pong_wn_dqn.yaml [key=value ...]
    python scripts/train.py --resume runs/<run-name>
    python scripts/train.py --config configs/minatar_wn_dqn.yaml --seeds 0-7 [learner.lr=[a,b]]
        (a group: one run per seed x rate in one process, each its own run directory)

Same as the `wnrl-train` console command.
"""

import sys

from wnrl.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
