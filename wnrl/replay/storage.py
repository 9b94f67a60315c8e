"""Frame-ring storage: each Atari frame stored once, stacks rebuilt on read; which rows are
transitions.

`add` takes one row per env stream per vector step; row `t` (the t-th add) of stream `s`
sits in slot `t % L` of that stream's ring (`L = capacity // num_envs`) and holds the
newest frame of the obs acted on (vector obs: all of it), the action, reward and flags.
An episode starts at a stream's first row and after an invalid row (its obs a final
observation, its step the autoreset); a life-loss terminal ends bootstrapping, not the
episode. The stack of row `t` is the newest frames of rows `t-C+1 .. t` with frames
before the episode start zeroed, as `AtariVectorEnv` pads: byte-identical to what the
actor saw. n-step windows stop at the first terminal/truncated row (`wnrl.replay.n_step`).
Rows are named by global ids `t * num_envs + s` (int64, `Batch.index`); a stored row
lives at flat position `s * L + t % L` of the per-row arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from wnrl.config import ConfigError
from wnrl.core.types import Transition
from wnrl.replay.n_step import window_complete, window_length

# Row flag bits. HIDDEN: a row of its episode that is never sampled (see `FrameRing.hide`).
VALID, TERMINAL, TRUNCATED, HIDDEN = np.uint8(1), np.uint8(2), np.uint8(4), np.uint8(8)


class ReplayMemoryError(ConfigError, MemoryError):
    """The replay's arrays do not fit in available memory (one-line message)."""


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def checkpoint_config(replay: Any) -> dict:
    """The settings a replay's `state_dict` (format 1) is saved with and must be loaded
    with: `ReplayBuffer`'s and `DeviceReplay`'s (both have these attributes)."""
    return {"format": 1, "num_envs": replay.num_envs, "ring": replay.ring,
            "obs_shape": list(replay.obs_shape), "obs_dtype": replay.obs_dtype.str,
            "stack": replay.stack, "n_step": replay.n_step, "gamma": replay.gamma,
            "prioritized": replay.prioritized}


def check_checkpoint_config(replay: Any, state: dict) -> None:
    """ConfigError naming the first setting in which `state` differs from `replay`'s."""
    mine, theirs = checkpoint_config(replay), state.get("config", {})
    for key in (k for k in mine if theirs.get(k) != mine[k]):
        raise ConfigError(f"replay state has {key}={theirs.get(key)!r}, need {mine[key]!r}")


class FrameRing:
    """Per-env rings of rows, and which of them are sampleable transitions.

    capacity: rows kept, `capacity // num_envs` per stream. obs_shape: per env, (C, H, W)
    images (C == frame_stack; newest frame stored as obs_dtype) or (D,) vectors (stored
    whole as float32; frame_stack must be 1). n_step: window length, for which rows have
    a complete window. extra_bytes(capacity): the bytes the caller allocates beside for
    that many rows (a sum tree), counted in the memory check. Raises ConfigError on bad
    shapes, ReplayMemoryError if it cannot fit.

    Per-row arrays, flat at position `stream * ring + slot` (`ARRAYS`, `rings` views them
    as [num_envs, ring, ...]): frames obs_dtype[capacity + 1, *frame_shape] (the extra
    last frame stays all zero: the padding of stacks), action int32[capacity], reward
    float32[capacity], flags uint8[capacity] (VALID | TERMINAL | TRUNCATED | HIDDEN).
    `t` is rows added per stream (overwritten ones included).
    """

    ARRAYS = ("frames", "action", "reward", "flags")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                 num_envs: int, *, frame_stack: int, n_step: int,
                 extra_bytes: Callable[[int], int] | None = None) -> None:
        obs_shape = tuple(int(d) for d in obs_shape)
        self.stacked = len(obs_shape) > 1
        if frame_stack != (obs_shape[0] if self.stacked else 1):
            raise ConfigError(f"replay frame_stack={frame_stack} is invalid for obs_shape "
                              f"{obs_shape}: must be obs_shape[0] for images, 1 for vectors")
        self.num_envs, self.n_step = int(num_envs), int(n_step)
        self.ring = int(capacity) // self.num_envs
        self.capacity = self.ring * self.num_envs
        self.stack = int(frame_stack)
        if self.ring < self.stack + self.n_step + 1:
            raise ConfigError(f"replay.capacity={capacity} is invalid: must be >= num_envs * (frame"
                              f"_stack + n_step + 1) = {num_envs * (self.stack + n_step + 1)}")
        self.obs_shape, self.frame_shape = obs_shape, obs_shape[int(self.stacked):]
        self.obs_dtype = np.dtype(obs_dtype) if self.stacked else np.dtype(np.float32)
        need = self.bytes_needed(capacity, obs_shape, obs_dtype, num_envs)
        need += extra_bytes(self.capacity) if extra_bytes is not None else 0
        have = available_memory_bytes()
        if need > have:
            raise ReplayMemoryError(f"replay.capacity={capacity} needs {need:,} bytes but only "
                                    f"{have:,} are available: lower replay.capacity")
        rows = self.capacity
        self.frames = np.zeros((rows + 1, *self.frame_shape), dtype=self.obs_dtype)
        self.action = np.zeros(rows, dtype=np.int32)
        self.reward = np.zeros(rows, dtype=np.float32)
        self.flags = np.zeros(rows, dtype=np.uint8)
        self.t = 0

    @staticmethod
    def bytes_needed(capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                     num_envs: int) -> int:
        """Bytes of the per-row arrays for these settings (frames, action, reward, flags)."""
        rows, image = capacity // num_envs * num_envs, len(obs_shape) > 1
        frame = int(np.prod(obs_shape[image:])) * (np.dtype(obs_dtype).itemsize if image else 4)
        return (rows + 1) * frame + rows * (4 + 4 + 1)

    @property
    def nbytes(self) -> int:
        """Bytes allocated (equals `bytes_needed`)."""
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    def __len__(self) -> int:
        """Rows stored (valid or not): num_envs * min(t, ring)."""
        return self.num_envs * min(self.t, self.ring)

    def rings(self, a: np.ndarray) -> np.ndarray:
        """A flat per-row array [capacity(+1), ...] viewed as [num_envs, ring, ...]."""
        return a[: self.capacity].reshape(self.num_envs, self.ring, *a.shape[1:])

    def lo(self, t: int) -> int:
        """Oldest sampleable row after `t` adds: the first C-1 stored rows lack older frames."""
        return 0 if t <= self.ring else t - self.ring + self.stack - 1

    def pos(self, row: np.ndarray, stream: np.ndarray) -> np.ndarray:
        """Flat positions int64[...] of rows `row` of streams `stream` (broadcast)."""
        return stream * self.ring + row % self.ring

    def ids(self, pos: np.ndarray) -> np.ndarray:
        """Global ids int64[K] of the rows stored at flat positions pos int64[K]."""
        stream, slot = np.divmod(pos, self.ring)
        row = slot + self.ring * ((self.t - 1 - slot) // self.ring)
        return row * self.num_envs + stream

    def grid(self, first: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, stream) int64[K] for rows first .. t-1 of every stream, in id order."""
        rows = np.arange(first, self.t)
        return np.repeat(rows, self.num_envs), np.tile(np.arange(self.num_envs), len(rows))

    def add(self, transition: Transition) -> None:
        """Store one row per env stream (every env step, valid or not). Shapes: Transition.
        ValueError (nothing stored) if obs is not [num_envs, *obs_shape]."""
        n, slot = self.num_envs, self.t % self.ring
        obs = np.asarray(transition.obs)
        if obs.shape != (n, *self.obs_shape):
            raise ValueError(f"replay.add: obs shape {obs.shape} != {(n, *self.obs_shape)}")
        valid = np.asarray(transition.valid, dtype=bool)
        pos = np.arange(n) * self.ring + slot
        self.frames[pos] = obs[:, -1] if self.stacked else obs
        self.action[pos] = transition.action
        self.reward[pos] = transition.reward
        self.flags[pos] = (valid * VALID | np.asarray(transition.terminal, bool) * TERMINAL
                           | np.asarray(transition.truncated, bool) * TRUNCATED)
        if self.t > 0:  # an episode that ends without a done flag ends by truncation
            prev = pos - 1 if slot > 0 else pos + self.ring - 1
            open_end = ~valid & ((self.flags[prev] & (TERMINAL | TRUNCATED)) == 0)
            self.flags[prev] |= open_end * TRUNCATED
        self.t += 1

    def hide(self, index: np.ndarray) -> np.ndarray:
        """Never sample rows int64[K] (global ids; unknown ones ignored), which stay part of
        their episodes: their stacks would need frames this replay never received.
        Returns the flat positions int64[K'] of the stored ones."""
        row, stream = np.divmod(np.asarray(index, np.int64), self.num_envs)
        pos = self.pos(row, stream)[(row >= max(0, self.t - self.ring)) & (row < self.t)]
        self.flags[pos] |= HIDDEN
        return pos

    def window(self, row: np.ndarray, stream: np.ndarray) -> tuple[np.ndarray, ...]:
        """The n-step windows of rows int64[K]: rows row .. row+n-1 as (reward float32[K, n],
        terminal bool[K, n], truncated bool[K, n]); rows not yet added end nothing."""
        ahead = row[:, None] + np.arange(self.n_step)
        pos = self.pos(ahead, stream[:, None])
        flags, written = self.flags[pos], ahead < self.t
        term = (flags & TERMINAL).astype(bool) & written
        trunc = (flags & TRUNCATED).astype(bool) & written
        return self.reward[pos], term, trunc

    def sampleable(self, row: np.ndarray, stream: np.ndarray) -> np.ndarray:
        """bool[K]: rows stored, valid, with every stack frame kept and a complete window."""
        inside = (row >= self.lo(self.t)) & (row < self.t)
        row = np.where(inside, row, self.t - 1)
        ok = inside & ((self.flags[self.pos(row, stream)] & (VALID | HIDDEN)) == VALID)
        late = row >= self.t - self.n_step  # older rows always have a complete window
        if late.any():
            _, term, trunc = self.window(row[late], stream[late])
            ok[late] &= window_complete(row[late], window_length(term, trunc), term, self.t)
        return ok

    def sampleable_indices(self) -> np.ndarray:
        """int64[M] global ids of every sampleable row, ascending (O(capacity))."""
        row, stream = self.grid(self.lo(self.t))
        return (row * self.num_envs + stream)[self.sampleable(row, stream)]

    def stacks(self, row: np.ndarray, stream: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Observations of rows int64[K] (all zeros where seen is False): [K, *obs_shape]."""
        src = row[:, None] - np.arange(self.stack - 1, -1, -1)  # rows, oldest frame first
        keep = (src >= max(0, self.t - self.ring)) & (src < self.t) & seen[:, None]
        pos = self.pos(src, stream[:, None])
        if self.stack > 1:  # frame t-k is kept iff rows t-k .. t-1 are all valid
            prev = (self.flags[pos[:, :-1]] & VALID).astype(bool)
            keep[:, :-1] &= np.logical_and.accumulate(prev[:, ::-1], axis=1)[:, ::-1]
        out = np.take(self.frames, np.where(keep, pos, self.capacity), axis=0)
        return out if self.stacked else out[:, 0]

    def state_dict(self) -> dict:
        """t (int) and the stored rows of each array, [num_envs, min(t, ring), ...] tensors:
        frames obs_dtype[..., *frame_shape], action int32, reward float32, flags uint8."""
        used = min(self.t, self.ring)
        state: dict = {"t": self.t}
        for name in self.ARRAYS:
            rings = self.rings(getattr(self, name))[:, :used]
            state[name] = torch.from_numpy(np.ascontiguousarray(rings))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` of a storage with the same shapes."""
        self.t, used = int(state["t"]), min(int(state["t"]), self.ring)
        for name in self.ARRAYS:
            self.rings(getattr(self, name))[:, :used] = state[name].numpy()
