#!/usr/bin/env python
"""Train a DQN agent.

    python scripts/train.py --config configs/pong_wn_dqn.yaml [key=value ...]
    python scripts/train.py --resume runs/<run-name>

Same as the `wnrl-train` console command.
"""

import sys

from wnrl.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
