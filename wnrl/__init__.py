"""wnrl: DQN on Atari with weight-normalized Q-networks.

Importing wnrl (before torch) makes idle OpenMP threads sleep instead of spin
(`OMP_WAIT_POLICY=PASSIVE`, unless already set): on a CPU shared with other
processes (an env's threads, a second run), spinning threads starve the one
that holds the work, and a learner update measured 7x slower with torch's two
threads than with one; passive waiting removes that (`scripts/benchmark.py`).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
