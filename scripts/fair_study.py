"""The fair study (docs/results/minatar/README.md): tune each agent's learning rate, then
compare the agents at their tuned rates and at the shared rate; see
wnrl/experiments/fair.py (protocol, runs, ledger) and fair_report.py (statistics).

Finished runs are read from the ledger (<out>/runs.jsonl) and never retrained;
interrupted groups resume from their checkpoints.

    python scripts/fair_study.py --phase tune          # train the tuning runs, record them
    python scripts/fair_study.py --phase main          # the comparison at the chosen rates
    python scripts/fair_study.py --no-train            # only write the tables and figures
    python scripts/fair_study.py --plan                # what is left to train, in env steps
"""

from __future__ import annotations

import sys

from wnrl.experiments.fair_cli import main

if __name__ == "__main__":
    sys.exit(main())
