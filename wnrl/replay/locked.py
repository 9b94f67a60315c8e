"""`LockedReplay`: a replay shared by two threads, its mutating calls under one lock.

The async training loop (`wnrl.training.async_loop`, `train.mode=async`) runs the actor in the
main thread and the learner in another; both use the one replay. The actor adds rows;
the learner samples batches and writes priorities back. Each of these calls reads and
writes the same arrays (frames, flags, sum tree, generator), so they must not interleave:
`LockedReplay` runs `add`, `sample`, `sample_many`, `update_priorities`, `state_dict` and
`load_state_dict` under one `threading.Lock`.

What the lock does not cover, by design:

- a sampled `Batch` is a copy (stacks are gathered into new arrays), so the learner's
  update runs unlocked while the actor keeps adding;
- every other attribute is the wrapped buffer's, read without the lock (`len()` and
  the rest are only read while the learner is paused: the data-dependent init,
  checkpoints, evaluation).

It satisfies `wnrl.core.Replay`, as `ReplayBuffer` does (tests/test_core.py).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wnrl.core.types import Batch, Transition
    from wnrl.replay.buffer import ReplayBuffer
    from wnrl.replay.device import DeviceReplay

__all__ = ["LockedReplay"]


class LockedReplay:
    """A replay whose `add`, `sample`, `sample_many` and `update_priorities` hold one
    lock; any other attribute is the wrapped buffer's (used only while the learner is
    paused)."""

    def __init__(self, replay: ReplayBuffer | DeviceReplay) -> None:
        self.inner = replay
        self.lock = threading.Lock()

    def add(self, transition: Transition) -> None:
        with self.lock:
            self.inner.add(transition)

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        with self.lock:
            return self.inner.sample(batch_size, beta=beta)

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4) -> list[Batch]:
        """n batches of B drawn under one hold of the lock (no add in between)."""
        with self.lock:
            return self.inner.sample_many(n, batch_size, beta=beta)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        with self.lock:
            self.inner.update_priorities(index, priority)

    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.inner.load_state_dict(state)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
