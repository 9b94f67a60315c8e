"""What the noise study reads back for each agent (shared by the study and its plots)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AgentResults:
    """What the study read for one agent: per-seed arrays (S seeds)."""

    curves: np.ndarray  # float64[S, points], binned episode returns
    final: np.ndarray  # float64[S], final return
    noise: list[dict[str, float]]  # per seed, `noise_of_run`
