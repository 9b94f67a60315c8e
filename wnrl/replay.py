"""Frame-ring replay buffer: each Atari frame stored once, stacks rebuilt at sample time.

`add` takes one row per env stream per vector step; row `t` (the t-th add) of stream `s`
sits in slot `t % L` of that stream's ring (`L = capacity // num_envs`) and holds the
newest frame of the obs acted on (vector obs: all of it), the action, reward and flags.
An episode starts at a stream's first row and after an invalid row (its obs a final
observation, its step the autoreset); a life-loss terminal ends bootstrapping, not the
episode. The stack of row `t` is the newest frames of rows `t-C+1 .. t` with frames
before the episode start zeroed, as `AtariVectorEnv` pads: byte-identical to what the
actor saw. n-step windows stop at the first terminal/truncated row (`n_step_targets`).
Rows are named by global ids `t * num_envs + s` (int64, `Batch.index`).

Prioritized: P_i = p_i / sum_j p_j, weights normalized by the batch's largest weight
(`importance_weights`; docs/ARCHITECTURE.md, "Prioritized replay", says why).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from wnrl.config import ConfigError, ReplayConfig
from wnrl.core.types import Batch, Transition
from wnrl.sum_tree import SumTree, importance_weights

# Row flag bits. HIDDEN: a row of its episode that is never sampled (see `hide`).
VALID, TERMINAL, TRUNCATED, HIDDEN = np.uint8(1), np.uint8(2), np.uint8(4), np.uint8(8)


class ReplayMemoryError(ConfigError, MemoryError):
    """The replay's arrays do not fit in available memory (one-line message)."""


__all__ = ["Batch", "ReplayBuffer", "ReplayMemoryError", "Transition", "n_step_targets"]


def n_step_targets(
    rewards: np.ndarray, terminals: np.ndarray, truncateds: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns over windows of n rows that stop at the first terminal/truncated row.

    Args: rewards float32[B, n], terminals bool[B, n], truncateds bool[B, n] of rows
    j .. j+n-1. With m the window length (index of the first stop + 1, else n):
    returns (sum_{k<m} gamma^k r_k: float32[B], discount: float32[B] = 0 if row m-1 is
    terminal else gamma^m, m: int64[B]). The bootstrap state is row j + m.
    """
    n = rewards.shape[1]
    stop = np.asarray(terminals, bool) | np.asarray(truncateds, bool)
    last = np.where(stop.any(axis=1), stop.argmax(axis=1), n - 1)
    powers = float(gamma) ** np.arange(n + 1, dtype=np.float64)
    inside = np.arange(n) <= last[:, None]
    ret = (np.asarray(rewards, np.float64) * powers[:n] * inside).sum(axis=1)
    hit_terminal = np.asarray(terminals, bool)[np.arange(len(last)), last]
    discount = np.where(hit_terminal, 0.0, powers[last + 1])
    return ret.astype(np.float32), discount.astype(np.float32), (last + 1).astype(np.int64)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class ReplayBuffer:
    """Uniform or proportional-prioritized replay over per-env frame rings.

    capacity: rows kept, `capacity // num_envs` per stream. obs_shape: per env, (C, H, W)
    images (C == frame_stack; newest frame stored as obs_dtype) or (D,) vectors (stored
    whole as float32; frame_stack must be 1). prioritized: priorities (|TD| + eps)**alpha
    in a sum tree. Raises ConfigError on bad shapes, ReplayMemoryError if it cannot fit.
    `len()` is rows stored (valid or not); `sampleable_indices()` lists sampleable ones.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                 num_envs: int, *, frame_stack: int, n_step: int = 1, gamma: float = 0.99,
                 prioritized: bool = False, alpha: float = 0.6, eps: float = 1e-6,
                 seed: int = 0) -> None:
        obs_shape = tuple(int(d) for d in obs_shape)
        self._stacked = len(obs_shape) > 1
        if frame_stack != (obs_shape[0] if self._stacked else 1):
            raise ConfigError(f"replay frame_stack={frame_stack} is invalid for obs_shape "
                              f"{obs_shape}: must be obs_shape[0] for images, 1 for vectors")
        self.num_envs, self.n_step, self.gamma = int(num_envs), int(n_step), float(gamma)
        self.ring = int(capacity) // self.num_envs
        self.capacity = self.ring * self.num_envs
        self.stack = int(frame_stack)
        if self.ring < self.stack + self.n_step + 1:
            raise ConfigError(f"replay.capacity={capacity} is invalid: must be >= num_envs * (frame"
                              f"_stack + n_step + 1) = {num_envs * (self.stack + n_step + 1)}")
        self.obs_shape, self.frame_shape = obs_shape, obs_shape[int(self._stacked):]
        self.obs_dtype = np.dtype(obs_dtype) if self._stacked else np.dtype(np.float32)
        self.alpha, self.eps = float(alpha), float(eps)
        need = self.bytes_needed(capacity, obs_shape, obs_dtype, num_envs, prioritized)
        have = available_memory_bytes()
        if need > have:
            raise ReplayMemoryError(f"replay.capacity={capacity} needs {need:,} bytes but only "
                                    f"{have:,} are available: lower replay.capacity")
        rows = self.capacity
        # Flat rows at stream * ring + slot; an extra all-zero frame for padded stack slots.
        self._frames = np.zeros((rows + 1, *self.frame_shape), dtype=self.obs_dtype)
        self._action = np.zeros(rows, dtype=np.int32)
        self._reward = np.zeros(rows, dtype=np.float32)
        self._flags = np.zeros(rows, dtype=np.uint8)
        self._tree = SumTree(rows) if prioritized else None
        self._t, self._max_priority = 0, 1.0  # rows added per stream; new rows' priority
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_config(cls, cfg: ReplayConfig, obs_shape: tuple[int, ...],
                    obs_dtype: np.dtype | type, num_envs: int, gamma: float,
                    seed: int = 0) -> ReplayBuffer:
        """Build from `ReplayConfig`; frame_stack is obs_shape[0] for images, else 1."""
        return cls(cfg.capacity, obs_shape, obs_dtype, num_envs,
                   frame_stack=obs_shape[0] if len(obs_shape) > 1 else 1, n_step=cfg.n_step,
                   gamma=gamma, prioritized=cfg.prioritized, alpha=cfg.priority_alpha,
                   eps=cfg.priority_eps, seed=seed)

    @staticmethod
    def bytes_needed(capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type,
                     num_envs: int, prioritized: bool = False) -> int:
        """Bytes allocated for these settings (frames, action, reward, flags, sum tree)."""
        rows, image = capacity // num_envs * num_envs, len(obs_shape) > 1
        frame = int(np.prod(obs_shape[image:])) * (np.dtype(obs_dtype).itemsize if image else 4)
        tree = 16 * (1 << (rows - 1).bit_length()) if prioritized else 0
        return (rows + 1) * frame + rows * (4 + 4 + 1) + tree

    def __len__(self) -> int:
        """Rows stored (valid or not): num_envs * min(steps added, ring length)."""
        return self.num_envs * min(self._t, self.ring)

    @property
    def nbytes(self) -> int:
        """Bytes allocated (equals `bytes_needed`)."""
        arrays = (self._frames, self._action, self._reward, self._flags)
        return sum(a.nbytes for a in arrays) + (self._tree.nbytes if self._tree else 0)

    @property
    def steps_added(self) -> int:
        """Vector steps added (rows per stream, overwritten ones included)."""
        return self._t

    @property
    def priorities(self) -> np.ndarray | None:
        """float64[num_envs, ring] copy of the stored priorities (0: not sampleable)."""
        return None if self._tree is None else self._rings(self._tree.leaves).copy()

    @property
    def frames(self) -> np.ndarray:
        """obs_dtype[num_envs, ring, *frame_shape] view of the frame rings."""
        return self._rings(self._frames)

    def _rings(self, a: np.ndarray) -> np.ndarray:
        """A flat per-row array [capacity(+1), ...] viewed as [num_envs, ring, ...]."""
        return a[: self.capacity].reshape(self.num_envs, self.ring, *a.shape[1:])

    def _lo(self, t: int) -> int:
        """Oldest sampleable row after `t` adds: the first C-1 stored rows lack older frames."""
        return 0 if t <= self.ring else t - self.ring + self.stack - 1

    def _pos(self, row: np.ndarray, stream: np.ndarray) -> np.ndarray:
        return stream * self.ring + row % self.ring

    def add(self, transition: Transition) -> None:
        """Store one row per env stream (every env step, valid or not). Shapes: Transition."""
        n, slot = self.num_envs, self._t % self.ring
        obs = np.asarray(transition.obs)
        if obs.shape != (n, *self.obs_shape):
            raise ValueError(f"replay.add: obs shape {obs.shape} != {(n, *self.obs_shape)}")
        valid = np.asarray(transition.valid, dtype=bool)
        if self._tree is not None:  # rows about to leave the sampleable range
            old = np.arange(self._lo(self._t), self._lo(self._t + 1))
            self._tree.set(self._pos(old[None, :], np.arange(n)[:, None]).ravel(), 0.0)
        pos = np.arange(n) * self.ring + slot
        self._frames[pos] = obs[:, -1] if self._stacked else obs
        self._action[pos] = transition.action
        self._reward[pos] = transition.reward
        self._flags[pos] = (valid * VALID | np.asarray(transition.terminal, bool) * TERMINAL
                            | np.asarray(transition.truncated, bool) * TRUNCATED)
        if self._t > 0:  # an episode that ends without a done flag ends by truncation
            prev = pos - 1 if slot > 0 else pos + self.ring - 1
            open_end = ~valid & ((self._flags[prev] & (TERMINAL | TRUNCATED)) == 0)
            self._flags[prev] |= open_end * TRUNCATED
        self._t += 1
        if self._tree is not None:
            self._activate_new_rows()

    def _activate_new_rows(self) -> None:
        """Give max priority to rows whose n-step window the newest row completed."""
        row, stream = self._grid(max(self._lo(self._t), self._t - 1 - self.n_step))
        pos = self._pos(row, stream)[self._sampleable(row, stream)]
        pos = pos[self._tree.get(pos) == 0]
        self._tree.set(pos, self._max_priority)

    def _window(self, row: np.ndarray, stream: np.ndarray) -> tuple[np.ndarray, ...]:
        """n-step data for rows int64[K]: (return, discount, m, complete bool[K])."""
        ahead = row[:, None] + np.arange(self.n_step)
        pos = self._pos(ahead, stream[:, None])
        flags, written = self._flags[pos], ahead < self._t
        term = (flags & TERMINAL).astype(bool) & written
        trunc = (flags & TRUNCATED).astype(bool) & written
        ret, disc, m = n_step_targets(self._reward[pos], term, trunc, self.gamma)
        complete = (row + m < self._t) | term[np.arange(len(row)), m - 1]
        return ret, disc, m, complete

    def _sampleable(self, row: np.ndarray, stream: np.ndarray) -> np.ndarray:
        """bool[K]: rows stored, valid, with every stack frame kept and a complete window."""
        inside = (row >= self._lo(self._t)) & (row < self._t)
        row = np.where(inside, row, self._t - 1)
        ok = inside & ((self._flags[self._pos(row, stream)] & (VALID | HIDDEN)) == VALID)
        late = row >= self._t - self.n_step  # older rows always have a complete window
        if late.any():
            ok[late] &= self._window(row[late], stream[late])[3]
        return ok

    def sampleable_indices(self) -> np.ndarray:
        """int64[M] global ids of every sampleable row, ascending (O(capacity))."""
        row, stream = self._grid(self._lo(self._t))
        return (row * self.num_envs + stream)[self._sampleable(row, stream)]

    def _grid(self, first: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, stream) int64[K] for rows first .. t-1 of every stream, in id order."""
        rows = np.arange(first, self._t)
        return np.repeat(rows, self.num_envs), np.tile(np.arange(self.num_envs), len(rows))

    def _stacks(self, row: np.ndarray, stream: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Observations of rows int64[K] (all zeros where seen is False): [K, *obs_shape]."""
        src = row[:, None] - np.arange(self.stack - 1, -1, -1)  # rows, oldest frame first
        keep = (src >= max(0, self._t - self.ring)) & (src < self._t) & seen[:, None]
        pos = self._pos(src, stream[:, None])
        if self.stack > 1:  # frame t-k is kept iff rows t-k .. t-1 are all valid
            prev = (self._flags[pos[:, :-1]] & VALID).astype(bool)
            keep[:, :-1] &= np.logical_and.accumulate(prev[:, ::-1], axis=1)[:, ::-1]
        out = np.take(self._frames, np.where(keep, pos, self.capacity), axis=0)
        return out if self._stacked else out[:, 0]

    def _batch(self, index: np.ndarray, weight: np.ndarray) -> Batch:
        row, stream = np.divmod(index, self.num_envs)
        ret, disc, m, _ = self._window(row, stream)
        nxt = row + m
        both = self._stacks(np.concatenate([row, nxt]), np.concatenate([stream, stream]),
                            np.concatenate([np.ones(len(row), bool), nxt < self._t]))
        action = self._action[self._pos(row, stream)].astype(np.int64)
        return Batch(both[: len(row)], action, ret, disc, both[len(row):], weight, index)

    def get(self, index: np.ndarray) -> Batch:
        """The batch for given global ids int64[B] (weights 1); ValueError if unsampleable."""
        index = np.asarray(index, dtype=np.int64).ravel()
        row, stream = np.divmod(index, self.num_envs)
        if (bad := ~self._sampleable(row, stream)).any():
            raise ValueError(f"replay rows {index[bad][:5].tolist()} are not sampleable")
        return self._batch(index, np.ones(len(index), np.float32))

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """B transitions with replacement: uniform, or proportional to priority (stratified)
        with weights `importance_weights(P, beta)`."""
        if self._tree is None:
            index = self._sample_uniform(batch_size)
            return self._batch(index, np.ones(batch_size, np.float32))
        if (total := self.priority_total) <= 0:
            raise ValueError("replay has no sampleable transitions yet")
        mass = (np.arange(batch_size) + self._rng.random(batch_size)) * (total / batch_size)
        index, priority = self.locate(mass)
        return self._batch(index, importance_weights(priority / total, beta))

    @property
    def prioritized(self) -> bool:
        return self._tree is not None

    @property
    def priority_total(self) -> float:
        """Sum of the stored priorities (prioritized replay; 0.0 for uniform)."""
        return self._tree.total if self._tree is not None else 0.0

    def locate(self, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding prefix sums mass float64[K] in [0, priority_total) of the priority
        tree: (global ids int64[K], their priorities float64[K], all > 0)."""
        assert self._tree is not None, "locate needs prioritized replay"
        pos = self._tree.find(np.minimum(mass, np.nextafter(self._tree.total, 0)))
        stream, slot = np.divmod(pos, self.ring)
        row = slot + self.ring * ((self._t - 1 - slot) // self.ring)
        return row * self.num_envs + stream, self._tree.get(pos)

    def hide(self, index: np.ndarray) -> None:
        """Never sample rows int64[K] (global ids; unknown ones ignored), which stay part of
        their episodes: their stacks would need frames this replay never received."""
        row, stream = np.divmod(np.asarray(index, np.int64), self.num_envs)
        pos = self._pos(row, stream)[(row >= max(0, self._t - self.ring)) & (row < self._t)]
        self._flags[pos] |= HIDDEN
        if self._tree is not None:
            self._tree.set(pos, 0.0)

    def _sample_uniform(self, batch_size: int) -> np.ndarray:
        lo, n = self._lo(self._t), self.num_envs
        found, need = [np.zeros(0, np.int64)], batch_size
        for _ in range(32 if self._t > lo else 0):  # rejection: invalid rows are rare
            index = lo * n + self._rng.integers(0, (self._t - lo) * n, size=need)
            found.append(index[self._sampleable(*np.divmod(index, n))])
            need -= len(found[-1])
            if need == 0:
                break
        if need > 0:
            every = self.sampleable_indices()
            if len(every) == 0:
                raise ValueError("replay has no sampleable transitions yet")
            found.append(self._rng.choice(every, size=need))
        return np.concatenate(found)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set priorities of rows int64[B] from |TD errors| float32[B]; stale ids ignored.
        No-op for uniform replay."""
        if self._tree is None:
            return
        index = np.asarray(index, dtype=np.int64)
        value = (np.abs(np.asarray(priority, np.float64)) + self.eps) ** self.alpha
        if value.shape != index.shape or index.ndim != 1 or not np.isfinite(value).all():
            raise ValueError(f"update_priorities needs one finite priority per index: got "
                             f"{value.shape} priorities for {index.shape} indices")
        row, stream = np.divmod(index, self.num_envs)
        pos = self._pos(row, stream)
        ok = (row >= self._lo(self._t)) & (row < self._t) & (self._tree.get(pos) > 0)
        self._tree.set(pos[ok], value[ok])  # of repeated ids one value wins: read it back
        self._max_priority = max(self._max_priority, float(self._tree.get(pos[ok]).max(initial=0)))

    def _config(self) -> dict:
        return {"format": 1, "num_envs": self.num_envs, "ring": self.ring,
                "obs_shape": list(self.obs_shape), "obs_dtype": self.obs_dtype.str,
                "stack": self.stack, "n_step": self.n_step, "gamma": self.gamma,
                "prioritized": self._tree is not None}

    def state_dict(self) -> dict:
        """Tensors, ints, floats and strings only (torch.load(weights_only=True) safe)."""
        used = min(self._t, self.ring)
        state = {"config": self._config(), "t": self._t, "max_priority": self._max_priority,
                 "rng": self._rng.bit_generator.state}
        for name in ("frames", "action", "reward", "flags"):
            rings = self._rings(getattr(self, "_" + name))[:, :used]
            state[name] = torch.from_numpy(np.ascontiguousarray(rings))
        if self._tree is not None:
            state["priorities"] = torch.from_numpy(self._tree.leaves.copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` of a buffer built with the same settings."""
        mine, theirs = self._config(), state.get("config", {})
        for key in (k for k in mine if theirs.get(k) != mine[k]):
            raise ConfigError(f"replay state has {key}={theirs.get(key)!r}, need {mine[key]!r}")
        self._t, used = int(state["t"]), min(int(state["t"]), self.ring)
        for name in ("frames", "action", "reward", "flags"):
            self._rings(getattr(self, "_" + name))[:, :used] = state[name].numpy()
        self._max_priority = float(state["max_priority"])
        self._rng.bit_generator.state = state["rng"]
        if self._tree is not None:
            self._tree.load(state["priorities"].numpy())
