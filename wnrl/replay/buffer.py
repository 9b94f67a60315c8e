"""`ReplayBuffer`: the replay the actor fills and the learner samples, composed of its parts.

- rows: a `FrameRing` (`wnrl.replay.storage`) stores every row once per env stream,
  rebuilds frame stacks and knows which rows are sampleable transitions;
- targets: `n_step_targets` (`wnrl.replay.n_step`) turns a row's window into its return,
  discount and bootstrap row;
- drawing: a sampler (`wnrl.replay.samplers`), uniform or prioritized, chosen by the
  `prioritized` argument, owns the random generator and the priorities.

The buffer assembles batches (`Batch`, `wnrl.core.types`) and owns the checkpoint format
(`state_dict`, format 1).
"""

from __future__ import annotations

import numpy as np

from wnrl.config import ReplayConfig
from wnrl.core.types import Batch, Transition
from wnrl.replay.n_step import n_step_targets
from wnrl.replay.samplers import PrioritizedSampler, Sampler, UniformSampler
from wnrl.replay.storage import FrameRing, check_checkpoint_config, checkpoint_config

__all__ = ["ReplayBuffer"]


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
        kind = PrioritizedSampler if prioritized else UniformSampler
        self.storage = rows = FrameRing(capacity, obs_shape, obs_dtype, num_envs,
                                        frame_stack=frame_stack, n_step=n_step,
                                        extra_bytes=kind.bytes_needed)
        self.sampler: Sampler = (PrioritizedSampler(rows, seed, alpha=alpha, eps=eps)
                                 if prioritized else UniformSampler(rows, seed))
        self.num_envs, self.n_step, self.gamma = rows.num_envs, rows.n_step, float(gamma)
        self.ring, self.capacity, self.stack = rows.ring, rows.capacity, rows.stack
        self.obs_shape, self.frame_shape, self.obs_dtype = (rows.obs_shape, rows.frame_shape,
                                                            rows.obs_dtype)
        self.alpha, self.eps = float(alpha), float(eps)

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
        kind = PrioritizedSampler if prioritized else UniformSampler
        rows = FrameRing.bytes_needed(capacity, obs_shape, obs_dtype, num_envs)
        return rows + kind.bytes_needed(capacity // num_envs * num_envs)

    def __len__(self) -> int:
        """Rows stored (valid or not): num_envs * min(steps added, ring length)."""
        return len(self.storage)

    @property
    def nbytes(self) -> int:
        """Bytes allocated (equals `bytes_needed`)."""
        return self.storage.nbytes + self.sampler.nbytes

    @property
    def steps_added(self) -> int:
        """Vector steps added (rows per stream, overwritten ones included)."""
        return self.storage.t

    @property
    def priorities(self) -> np.ndarray | None:
        """float64[num_envs, ring] copy of the stored priorities (0: not sampleable); None
        for uniform replay."""
        return self.sampler.priorities

    @property
    def frames(self) -> np.ndarray:
        """obs_dtype[num_envs, ring, *frame_shape] view of the frame rings."""
        return self.storage.rings(self.storage.frames)

    @property
    def prioritized(self) -> bool:
        return self.sampler.prioritized

    @property
    def priority_total(self) -> float:
        """Sum of the stored priorities (prioritized replay; 0.0 for uniform)."""
        return self.sampler.priority_total

    def add(self, transition: Transition) -> None:
        """Store one row per env stream (every env step, valid or not). Shapes: Transition."""
        self.storage.add(transition)
        self.sampler.added()

    def sampleable_indices(self) -> np.ndarray:
        """int64[M] global ids of every sampleable row, ascending (O(capacity))."""
        return self.storage.sampleable_indices()

    def hide(self, index: np.ndarray) -> None:
        """Never sample rows int64[K] (global ids; unknown ones ignored), which stay part of
        their episodes: their stacks would need frames this replay never received."""
        self.sampler.hidden(self.storage.hide(index))

    def get(self, index: np.ndarray) -> Batch:
        """The batch for given global ids int64[B] (weights 1); ValueError if unsampleable."""
        index = np.asarray(index, dtype=np.int64).ravel()
        row, stream = np.divmod(index, self.num_envs)
        if (bad := ~self.storage.sampleable(row, stream)).any():
            raise ValueError(f"replay rows {index[bad][:5].tolist()} are not sampleable")
        return self._batch(index, np.ones(len(index), np.float32))

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """B transitions with replacement: uniform, or proportional to priority (stratified)
        with weights `importance_weights(P, beta)`."""
        return self._batch(*self.sampler.sample(batch_size, beta))

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4) -> list[Batch]:
        """n batches of B: n `sample` calls in a row (the interface `DeviceReplay` draws
        a run of batches through with one prefix sum)."""
        return [self.sample(batch_size, beta) for _ in range(n)]

    def locate(self, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding prefix sums mass float64[K] in [0, priority_total) of the priority
        tree: (global ids int64[K], their priorities float64[K], all > 0)."""
        assert isinstance(self.sampler, PrioritizedSampler), "locate needs prioritized replay"
        return self.sampler.locate(mass)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set priorities of rows int64[B] from |TD errors| float32[B]; stale ids ignored.
        No-op for uniform replay."""
        self.sampler.update(index, priority)

    def _batch(self, index: np.ndarray, weight: np.ndarray) -> Batch:
        """The Batch of rows index int64[B] with importance weights float32[B]."""
        rows = self.storage
        row, stream = np.divmod(index, self.num_envs)
        ret, disc, m = n_step_targets(*rows.window(row, stream), self.gamma)
        nxt = row + m
        both = rows.stacks(np.concatenate([row, nxt]), np.concatenate([stream, stream]),
                           np.concatenate([np.ones(len(row), bool), nxt < rows.t]))
        action = rows.action[rows.pos(row, stream)].astype(np.int64)
        return Batch(both[: len(row)], action, ret, disc, both[len(row):], weight, index)

    def state_dict(self) -> dict:
        """Tensors, ints, floats and strings only (torch.load(weights_only=True) safe).
        Format 1, keys in this order: config, t, max_priority, rng (the generator's state),
        frames, action, reward, flags ([num_envs, rows stored per stream, ...], see
        `FrameRing.state_dict`) and, if prioritized, priorities float64[capacity]."""
        rows, sampler = self.storage.state_dict(), self.sampler.state_dict()
        return {"config": checkpoint_config(self), "t": rows.pop("t"),
                "max_priority": sampler.pop("max_priority"), "rng": sampler.pop("rng"),
                **rows, **sampler}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` of a buffer built with the same settings."""
        check_checkpoint_config(self, state)
        self.storage.load_state_dict(state)
        self.sampler.load_state_dict(state)

    # tests/test_train.py reads a loaded replay's flags as `replay._rings(replay._flags)`.
    @property
    def _flags(self) -> np.ndarray:
        return self.storage.flags

    def _rings(self, a: np.ndarray) -> np.ndarray:
        return self.storage.rings(a)
