"""Replay shard: a Ray actor (no CPU slot of its own) holding part of the replay.

Shard `j` of `S` serves the actor workers `i` with `i % S == j`, one ordinary
`wnrl.replay.ReplayBuffer` per worker (`replay.capacity // A` rows each), because a
buffer's streams must advance together and workers do not. Any A and S work: the
learner picks shards by their total priority (`wnrl.distributed.sampling`), so a
shard serving more workers is simply sampled more. `sample(c, share)` draws c rows
from the union of the shard's buffers in proportion to priority and returns each
row's true probability; the learner's side normalizes the weights once per batch.

Batch ids name both: `id = buffer_id * K + k` for buffer `k` of `K`, so
`update_priorities` sends each id back to its buffer (stale ids are ignored).

Workers push their chunks here themselves, each in order. A chunk carries its
incarnation (a new one per worker process) and its number `seq` within it. The
shard stores a closing row (the last observation it has, `valid=False`), exactly
what `Actor.cut_episodes` emits, whenever the stream it holds breaks off: at a new
incarnation (a restart, or a resumed run) and at a gap in `seq` (chunks lost on
the way while the worker lived on). The open episodes end by truncation and the
next rows start new ones, so no stack or n-step window spans the break. After a gap
the first `frame_stack - 1` rows of each stream are hidden (never sampled) unless a
new episode starts within them: the frames their stacks need were lost. A chunk
older than the last one stored is dropped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from wnrl.config import Config, ConfigError, ReplayConfig
from wnrl.distributed.sampling import Draw, draw
from wnrl.distributed.workers import Chunk
from wnrl.replay import ReplayBuffer, Transition


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
        self.next_seq = [0] * len(self.buffers)  # the chunk expected next per worker
        self.rows_added = [0] * len(self.buffers)  # env steps stored per worker
        self.restarts_seen = [0] * len(self.buffers)
        self.gaps_seen = [0] * len(self.buffers)  # breaks in a live incarnation's chunks
        self.stale_chunks = [0] * len(self.buffers)  # dropped: older than one stored
        # rows still to hide after a gap, and the streams whose episode spans it
        self._hiding = [(0, np.zeros(self.num_envs, bool)) for _ in self.buffers]
        self._rng = np.random.default_rng(seed)

    def _obs(self, frames: np.ndarray) -> np.ndarray:
        """Newest frames [N, H, W] as a (read-only) obs view [N, C, H, W] for `add`."""
        if not self.stacked:
            return frames
        return np.broadcast_to(frames[:, None], (len(frames), *self.obs_shape))

    def _close(self, k: int) -> None:
        """End worker k's open episodes: a row with its last observation, valid=False."""
        n, zeros = self.num_envs, np.zeros(self.num_envs, bool)
        self.buffers[k].add(Transition(self._obs(self.last_frame[k]), np.zeros(n, np.int64),
                                       np.zeros(n, np.float32), zeros, zeros, zeros))

    def add_chunk(self, chunk: Chunk) -> dict[str, Any]:
        """Store a worker's chunk; returns a small report for the driver's counters."""
        k, n = self._slot[chunk.worker], self.num_envs
        buf = self.buffers[k]
        report = {"worker": chunk.worker, "incarnation": chunk.incarnation, "steps": 0,
                  "episodes": chunk.episodes, "seconds": chunk.seconds, "node_id": chunk.node_id}
        if chunk.incarnation != self.incarnation[k]:
            if self.last_frame[k] is not None:  # close the previous incarnation's episodes
                self._close(k)
                self.restarts_seen[k] += 1
            self.incarnation[k], self.next_seq[k] = chunk.incarnation, 0
            self._hiding[k] = (0, np.zeros(n, bool))
        if chunk.seq < self.next_seq[k]:  # its place in the stream is taken
            self.stale_chunks[k] += 1
            return report
        gap = chunk.seq > self.next_seq[k]
        if gap:
            if self.next_seq[k] > 0:  # this incarnation's rows are open: end them here
                self._close(k)
            self.gaps_seen[k] += 1
        first = buf.steps_added
        for t in range(len(chunk.action)):
            buf.add(Transition(self._obs(chunk.frames[t]), chunk.action[t], chunk.reward[t],
                               chunk.terminal[t], chunk.truncated[t], chunk.valid[t]))
        self._hide_after_gap(k, first, chunk.valid, gap)
        if chunk.priority is not None:
            t, s = np.nonzero(np.isfinite(chunk.priority))
            buf.update_priorities((first + t) * n + s, chunk.priority[t, s])
        self.last_frame[k] = chunk.last_frame
        self.next_seq[k] = chunk.seq + 1
        steps = int(chunk.action.size)
        self.rows_added[k] += steps
        return {**report, "steps": steps}

    def _hide_after_gap(self, k: int, first: int, valid: np.ndarray, gap: bool) -> None:
        """Hide rows first.. (valid bool[T, N]) whose stacks reach back past a gap: the
        first stack - 1 rows after it, per stream until a new episode starts."""
        buf = self.buffers[k]
        left, open_ = (buf.stack - 1, np.ones(self.num_envs, bool)) if gap else self._hiding[k]
        for t in range(min(left, len(valid))):
            buf.hide((first + t) * self.num_envs + np.flatnonzero(open_))
            open_ = open_ & valid[t]  # an invalid row ends the episode: the next one is new
        self._hiding[k] = (max(0, left - len(valid)), open_)

    def sample(self, batch_size: int, share: float = 1.0) -> Draw:
        """`batch_size` rows from the union of the shard's buffers in proportion to priority,
        with P_i = share * p_i / (the shard's summed priority): `share` is the probability
        that the learner's side gave this shard a draw (`wnrl.distributed.sampling`)."""
        return draw(self.buffers, batch_size, self._rng, share)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """|TD errors| float32[B] for ids int64[B] from `sample`."""
        index, priority = np.asarray(index, np.int64), np.asarray(priority)
        ids, k = np.divmod(index, len(self.buffers))
        for j in np.unique(k):
            self.buffers[j].update_priorities(ids[k == j], priority[k == j])

    def stats(self) -> dict[str, list]:
        """Per worker served: `worker_ids`, `rows_added` (env steps), `stored`,
        `restarts_seen`, `gaps_seen`, `stale_chunks`."""
        return {"worker_ids": self.worker_ids, "rows_added": list(self.rows_added),
                "stored": [len(b) for b in self.buffers],
                "restarts_seen": list(self.restarts_seen), "gaps_seen": list(self.gaps_seen),
                "stale_chunks": list(self.stale_chunks)}

    def state_dict(self) -> dict[str, Any]:
        """Buffers plus each worker's incarnation and last frame (torch tensors, plain data)."""
        return {"worker_ids": list(self.worker_ids),
                "buffers": [b.state_dict() for b in self.buffers],
                "incarnation": [i or "" for i in self.incarnation],
                "last_frame": [torch.from_numpy(np.ascontiguousarray(f)) if f is not None
                               else torch.zeros(0) for f in self.last_frame],
                "next_seq": list(self.next_seq), "rows_added": list(self.rows_added)}

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
        self.next_seq = [int(q) for q in state.get("next_seq", [0] * len(self.buffers))]


def replace_capacity(cfg: Config, capacity: int) -> ReplayConfig:
    """`cfg.replay` with `capacity` rows, refused with a one-line error if too small."""
    try:
        return replace(cfg.replay, capacity=capacity)
    except ConfigError:
        raise ConfigError(f"replay.capacity={cfg.replay.capacity} split over "
                          f"{cfg.distributed.num_actors} actor workers leaves {capacity} rows "
                          "each: raise replay.capacity") from None
