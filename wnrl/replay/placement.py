"""Where a single run's replay lives: `make_replay` reads `replay.device`.

- host: `ReplayBuffer`, NumPy arrays in host memory; each batch is copied to the learner.
- learner: `DeviceReplay`, the same replay as torch tensors on the learner's device
  (sampling and stack assembly there; on the CPU the same code on CPU tensors).
- auto: learner when the learner is on CUDA and the replay fits in the device's free
  memory (with room left for the learner), else host.

Both hold the same rows and checkpoint in one format, so a run may resume with its
replay moved (only the sampler's draws change).
"""

from __future__ import annotations

import numpy as np
import torch

from wnrl.config import ReplayConfig
from wnrl.replay.buffer import ReplayBuffer
from wnrl.replay.device import DeviceReplay, free_bytes

__all__ = ["HEADROOM", "make_replay", "replay_placement"]

# free device memory `auto` leaves to the learner, its compiled code and CUDA graphs
HEADROOM = 4 << 30


def replay_placement(cfg: ReplayConfig, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                     num_envs: int, learner_device: torch.device) -> tuple[str, str]:
    """("host" or "learner", why) for `cfg.device` and a learner on `learner_device`."""
    if cfg.device != "auto":
        return cfg.device, f"replay.device={cfg.device}"
    if learner_device.type != "cuda":
        return "host", f"replay.device=auto: the learner is on {learner_device.type}"
    need = DeviceReplay.bytes_needed(cfg.capacity, obs_shape, obs_dtype, num_envs)
    have = free_bytes(learner_device)
    if need + HEADROOM > have:
        return "host", (f"replay.device=auto: the replay ({need / 2**30:.1f} GiB) does not fit "
                        f"in {learner_device}'s free memory ({have / 2**30:.1f} GiB) with "
                        f"{HEADROOM >> 30} GiB left for the learner")
    return "learner", f"replay.device=auto: the learner is on {learner_device}"


def make_replay(cfg: ReplayConfig, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                num_envs: int, *, gamma: float, seed: int,
                learner_device: torch.device) -> tuple[ReplayBuffer | DeviceReplay, str]:
    """The replay `cfg` describes, placed by `replay_placement`, and a line for the log
    saying where it is and why."""
    where, why = replay_placement(cfg, obs_shape, obs_dtype, num_envs, learner_device)
    if where == "learner":
        replay = DeviceReplay.from_config(cfg, obs_shape, obs_dtype, num_envs, gamma=gamma,
                                          seed=seed, device=learner_device)
        return replay, f"replay on {learner_device} ({why})"
    replay = ReplayBuffer.from_config(cfg, obs_shape, obs_dtype, num_envs, gamma=gamma,
                                      seed=seed)
    return replay, f"replay in host memory ({why})"
