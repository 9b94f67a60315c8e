"""The values that cross module boundaries (docs/ARCHITECTURE.md).

    env --obs--> actor --Transition--> replay --Batch--> learner --UpdateMetrics--> loop
                 actor --Episode (a finished game)--> loop (logs)

Plain NamedTuples / frozen dataclasses of NumPy arrays and floats: nothing here
knows torch modules, envs or Ray. Shapes: N envs, B minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Transition(NamedTuple):
    """Actor -> replay: one row per env, emitted at every env step (N = num_envs)."""

    obs: np.ndarray  # uint8[N, C, 84, 84] | float32[N, D]: obs the action was taken at
    action: np.ndarray  # int64[N]
    reward: np.ndarray  # float32[N] training reward (clipped if configured)
    terminal: np.ndarray  # bool[N] no bootstrap after this step
    truncated: np.ndarray  # bool[N] episode cut by the time limit: bootstrap
    valid: np.ndarray  # bool[N] False: obs is a final observation, this step the autoreset


class Batch(NamedTuple):
    """Replay -> learner; target = reward + discount * max_a Q_target(next_obs, a)."""

    obs: np.ndarray  # uint8[B, C, 84, 84] | float32[B, D]
    action: np.ndarray  # int64[B]
    reward: np.ndarray  # float32[B] n-step discounted return
    discount: np.ndarray  # float32[B] gamma**m, 0 if the window hit a terminal
    next_obs: np.ndarray  # like obs: observation m steps later (zeros if unused and unseen)
    weight: np.ndarray  # float32[B] importance weight (1 for uniform)
    index: np.ndarray  # int64[B] global row ids (t * num_envs + stream)


@dataclass(frozen=True)
class Episode:
    """A finished game: raw return (score), length in env steps, which env of the vector."""

    ret: float
    length: int
    env_index: int


@dataclass(frozen=True)
class UpdateMetrics:
    """Results of one update. `td_abs`: float32[B], |target - Q| per sample (for priorities)."""

    loss: float  # importance-weighted mean TD loss
    q_mean: float  # mean Q_online(obs, action) over the batch
    grad_norm: float  # global gradient norm before clipping
    td_abs: np.ndarray

    @classmethod
    def from_row(cls, row: np.ndarray) -> UpdateMetrics:
        """From a learner's host row float32[3 + B]: loss, mean Q, gradient norm, then
        |TD error| per sample."""
        return cls(loss=float(row[0]), q_mean=float(row[1]), grad_norm=float(row[2]),
                   td_abs=row[3:])

    def scalars(self) -> dict[str, float]:
        """The scalar metrics, for logging."""
        return {"loss": self.loss, "q_mean": self.q_mean, "grad_norm": self.grad_norm}
