"""Frame-ring replay: each Atari frame stored once, stacks rebuilt at sample time; uniform
or proportional-prioritized sampling; n-step targets.

One idea per module:

- `storage`: `FrameRing`, the per-env rings of rows (frames, actions, rewards, episode
  flags), frame stacking and which rows are sampleable transitions;
- `n_step`: n-step windows and targets, pure functions;
- `samplers`: `UniformSampler` and `PrioritizedSampler` (a `wnrl.sum_tree.SumTree`);
- `buffer`: `ReplayBuffer`, composing the three; its `state_dict` is the checkpoint format;
- `locked`: `LockedReplay`, a replay shared by the async loop's two threads;
- `device`: `DeviceReplay`, the same replay as torch tensors on the learner's device;
- `placement`: `make_replay`, which of the two `replay.device` asks for.

The names below are the public ones (`from wnrl.replay import ReplayBuffer`, ...).
"""

from __future__ import annotations

from wnrl.core.types import Batch, Transition
from wnrl.replay.buffer import ReplayBuffer
from wnrl.replay.n_step import n_step_targets
from wnrl.replay.storage import (
    HIDDEN,
    TERMINAL,
    TRUNCATED,
    VALID,
    ReplayMemoryError,
    available_memory_bytes,
)

__all__ = ["HIDDEN", "TERMINAL", "TRUNCATED", "VALID", "Batch", "ReplayBuffer",
           "ReplayMemoryError", "Transition", "available_memory_bytes", "n_step_targets"]
