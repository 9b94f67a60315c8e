"""Replay shard: a Ray actor (no CPU slot of its own) holding part of the replay.

Shard `j` of `S` serves the actor workers `i` with `i % S == j`, one ordinary
`wnrl.replay.ReplayBuffer` per worker (`replay.capacity // A` rows each), because a
buffer's streams must advance together and workers do not. `sample(B)` splits the
batch over the shard's buffers in proportion to their rows (a stratified draw) and,
with prioritized replay, draws by priority inside each buffer: importance weights
are normalized per buffer, as per-shard normalization does in Ape-X.

Batch ids name both: `id = buffer_id * K + k` for buffer `k` of `K`, so
`update_priorities` sends each id back to its buffer (stale ids are ignored).

When a worker's incarnation changes (a restart, or a resumed run) the shard first
stores a closing row (its last observation, `valid=False`), exactly what
`Actor.cut_episodes` emits: the dead episodes end by truncation and the new rows
start new episodes, so no stack mixes frames of two episodes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from wnrl.config import Config, ConfigError, ReplayConfig
from wnrl.distributed.workers import Chunk
from wnrl.replay import Batch, ReplayBuffer, Transition


class ReplayShard:
    """Replay buffers of the workers `worker_ids` (Ray actor body, plain Python class).

    Args:
        cfg: replay and learner settings (capacity is the whole run's, split per worker).
        obs_shape, obs_dtype, num_envs: the workers' vector env.
        worker_ids: the workers this shard serves.
        num_workers: A, all workers of the run.
    """

    def __init__(self, cfg: Config, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
                 num_envs: int, worker_ids: list[int], num_workers: int, seed: int = 0) -> None:
        per_worker = cfg.replay.capacity // num_workers
        self.obs_shape, self.num_envs = tuple(obs_shape), int(num_envs)
        self.stacked = len(self.obs_shape) > 1
        self.worker_ids = list(worker_ids)
        self._slot = {w: k for k, w in enumerate(self.worker_ids)}
        self.buffers = [ReplayBuffer.from_config(replace_capacity(cfg, per_worker), obs_shape,
                                                 obs_dtype, num_envs, gamma=cfg.learner.gamma,
                                                 seed=seed * 1000 + w) for w in self.worker_ids]
        self.incarnation: list[str | None] = [None] * len(self.buffers)
        self.last_frame: list[np.ndarray | None] = [None] * len(self.buffers)
        self.rows_added = [0] * len(self.buffers)  # env steps stored per worker
        self.restarts_seen = [0] * len(self.buffers)
        self._rng = np.random.default_rng(seed)

    def _obs(self, frames: np.ndarray) -> np.ndarray:
        """Newest frames [N, H, W] as a (read-only) obs view [N, C, H, W] for `add`."""
        if not self.stacked:
            return frames
        return np.broadcast_to(frames[:, None], (len(frames), *self.obs_shape))

    def add_chunk(self, chunk: Chunk) -> dict[str, Any]:
        """Store a worker's chunk; returns a small report for the driver's counters."""
        k, n = self._slot[chunk.worker], self.num_envs
        buf = self.buffers[k]
        if chunk.incarnation != self.incarnation[k]:
            if self.last_frame[k] is not None:  # close the previous incarnation's episodes
                zeros = np.zeros(n, bool)
                buf.add(Transition(self._obs(self.last_frame[k]), np.zeros(n, np.int64),
                                   np.zeros(n, np.float32), zeros, zeros, zeros))
                self.restarts_seen[k] += 1
            self.incarnation[k] = chunk.incarnation
        first = buf.steps_added
        for t in range(len(chunk.action)):
            buf.add(Transition(self._obs(chunk.frames[t]), chunk.action[t], chunk.reward[t],
                               chunk.terminal[t], chunk.truncated[t], chunk.valid[t]))
        if chunk.priority is not None:
            t, s = np.nonzero(np.isfinite(chunk.priority))
            buf.update_priorities((first + t) * n + s, chunk.priority[t, s])
        self.last_frame[k] = chunk.last_frame
        steps = int(chunk.action.size)
        self.rows_added[k] += steps
        return {"worker": chunk.worker, "incarnation": chunk.incarnation, "steps": steps,
                "episodes": chunk.episodes, "seconds": chunk.seconds, "node_id": chunk.node_id}

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch | None:
        """B transitions over the shard's buffers (None while none has a sampleable row)."""
        sizes = np.array([len(b) if b.steps_added > b.stack + b.n_step else 0
                          for b in self.buffers], dtype=np.float64)
        if sizes.sum() <= 0:
            return None
        counts = self._rng.multinomial(batch_size, sizes / sizes.sum())
        parts, K = [], len(self.buffers)
        for k in np.flatnonzero(counts):
            try:
                b = self.buffers[k].sample(int(counts[k]), beta=beta)
            except ValueError:  # nothing sampleable in this buffer yet
                continue
            parts.append(b._replace(index=b.index * K + k))
        if not parts:
            return None
        return Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in Batch._fields))

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """|TD errors| float32[B] for ids int64[B] from `sample`."""
        index, priority = np.asarray(index, np.int64), np.asarray(priority)
        ids, k = np.divmod(index, len(self.buffers))
        for j in np.unique(k):
            self.buffers[j].update_priorities(ids[k == j], priority[k == j])

    def stats(self) -> dict[str, list]:
        """Per worker served: `worker_ids`, `rows_added` (env steps), `stored`, `restarts_seen`."""
        return {"worker_ids": self.worker_ids, "rows_added": list(self.rows_added),
                "stored": [len(b) for b in self.buffers],
                "restarts_seen": list(self.restarts_seen)}

    def state_dict(self) -> dict[str, Any]:
        """Buffers plus each worker's incarnation and last frame (torch tensors, plain data)."""
        return {"worker_ids": list(self.worker_ids),
                "buffers": [b.state_dict() for b in self.buffers],
                "incarnation": [i or "" for i in self.incarnation],
                "last_frame": [torch.from_numpy(np.ascontiguousarray(f)) if f is not None
                               else torch.zeros(0) for f in self.last_frame],
                "rows_added": list(self.rows_added)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["worker_ids"]) != self.worker_ids:
            raise ConfigError(f"replay shard state serves workers {state['worker_ids']}, this "
                              f"shard serves {self.worker_ids}: keep distributed.num_actors and "
                              "distributed.num_replay_shards of the checkpoint")
        for buf, s in zip(self.buffers, state["buffers"]):
            buf.load_state_dict(s)
        self.incarnation = [i or None for i in state["incarnation"]]
        self.last_frame = [f.numpy() if f.numel() else None for f in state["last_frame"]]
        self.rows_added = [int(r) for r in state["rows_added"]]


def replace_capacity(cfg: Config, capacity: int) -> ReplayConfig:
    """`cfg.replay` with `capacity` rows, refused with a one-line error if too small."""
    try:
        return replace(cfg.replay, capacity=capacity)
    except ConfigError:
        raise ConfigError(f"replay.capacity={cfg.replay.capacity} split over "
                          f"{cfg.distributed.num_actors} actor workers leaves {capacity} rows "
                          "each: raise replay.capacity") from None
