"""Driver-side handles: the actor-worker pool and the sharded replay.

Both present what `wnrl.training.trainer.Trainer` uses of an actor and a replay, so
its checkpoint, restore, init and logging code runs unchanged in the distributed loop:
`ActorPool` is the actor side (`set_weights`, `device`, `epsilon`, `env_steps`,
`state_dict`) and `ShardedReplay` the sampler side (`sample`, `update_priorities`,
`state_dict`). Data never passes through the driver: each worker pushes its chunks
to its shard itself (`ActorWorker.push`), so the shard runs the learner's `sample`
and `update_priorities` calls between chunks that are stored, never behind a chunk
still being collected (a driver-submitted `add_chunk(chunk_ref)` would hold every
later call of the driver to that shard until the chunk exists).

Every blocking call waits at most `distributed.call_timeout_s` and raises
`DistributedError` with one line naming what did not answer.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
from ray.exceptions import (
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
)

from wnrl.config import Config, ConfigError
from wnrl.distributed.sampling import Draw, merge, split
from wnrl.replay import Batch
from wnrl.schedules import apex_epsilons

MAX_CONSECUTIVE_FAILURES = 5  # a worker that dies this often without delivering is dropped
UNAVAILABLE_BACKOFF_S = 0.5  # pause before asking a restarting/unreachable worker again


class DistributedError(RuntimeError):
    """A Ray component did not answer in time, or every actor worker is gone."""


def get(ref: Any, timeout: float, what: str) -> Any:
    """`ray.get` with a timeout and a one-line error naming `what`."""
    try:
        return ray.get(ref, timeout=timeout)
    except GetTimeoutError:
        raise DistributedError(f"{what} did not answer within {timeout:g} s "
                               "(distributed.call_timeout_s)") from None


def writable(batch: Batch) -> Batch:
    """Ray hands out read-only arrays (zero-copy); torch wants writable ones."""
    return Batch(*(np.require(a, requirements="W") for a in batch))


@dataclass
class WorkerState:
    handle: Any
    epsilon: float
    in_flight: collections.deque = field(default_factory=collections.deque)  # push refs
    env_steps: int = 0
    episodes: int = 0
    failures: int = 0  # consecutive
    restarts: int = 0  # incarnations seen after the first one
    lost_chunks: int = 0  # chunks lost with a dead incarnation
    incarnation: str = ""
    alive: bool = True
    node_id: str = ""
    unavailable_since: float | None = None  # restarting or unreachable since (monotonic s)
    retry_at: float = 0.0  # no request before this (monotonic s)


class ActorPool:
    """A actor workers (Ray actors with `max_restarts`) feeding their replay shards."""

    def __init__(self, cfg: Config, worker_cls: Any, shards: list[Any], num_envs: int,
                 start_step: int = 0) -> None:
        d = cfg.distributed
        self.cfg, self.shards, self.timeout = cfg, shards, d.call_timeout_s
        self.chunk_env_steps = d.chunk_steps * num_envs
        eps = apex_epsilons(d.num_actors)
        self.workers = [WorkerState(worker_cls.remote(cfg, i, eps[i], shards[i % len(shards)],
                                                      start_step), eps[i])
                        for i in range(d.num_actors)]
        self.env_steps = 0  # env steps stored in the replay
        self.num_episodes = 0
        self._weights_ref: Any = None
        self._version = -1
        self.owns_ray = False  # set by build_apex: shut Ray down at the end
        self.device = torch.device("cpu")  # weights reach the workers from the host

    # ---- the Actor interface used by Trainer ----------------------------------------
    @property
    def epsilon(self) -> float:
        return float(np.mean([w.epsilon for w in self.workers]))

    def set_weights(self, weights: dict) -> None:
        """Publish folded weights through the object store; every chunk request names
        them, and a worker loads them if it holds an older version (a fresh incarnation
        holds none)."""
        self._weights_ref = ray.put(weights)
        self._version += 1

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "num_episodes": self.num_episodes,
                "worker_env_steps": [w.env_steps for w in self.workers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["env_steps"])
        self.num_episodes = int(state["num_episodes"])
        for w, s in zip(self.workers, state.get("worker_env_steps", [])):
            w.env_steps = int(s)

    # ---- chunks ---------------------------------------------------------------------
    @property
    def steps_in_flight(self) -> int:
        return self.chunk_env_steps * sum(len(w.in_flight) for w in self.workers)

    def request(self, i: int) -> None:
        """Ask worker i for one chunk, which it stores in its shard itself. The weights go
        as a ref inside a list, which Ray does not fetch: the worker gets them only when
        its version is older."""
        w = self.workers[i]
        w.in_flight.append(w.handle.push.remote(self.cfg.distributed.chunk_steps,
                                                [self._weights_ref], self._version))

    def refill(self, may_act: Any) -> None:
        """Top every live worker up to `max_chunks_in_flight` while `may_act(steps)` says
        the replay ratio allows `steps` more env steps."""
        limit, now = self.cfg.distributed.max_chunks_in_flight, time.monotonic()
        while may_act(self.chunk_env_steps):
            free = [i for i, w in enumerate(self.workers)
                    if w.alive and len(w.in_flight) < limit and w.retry_at <= now]
            if not free:
                return
            # the least-loaded worker first, so that every worker gets its share
            self.request(min(free, key=lambda i: (len(self.workers[i].in_flight),
                                                  self.workers[i].env_steps)))

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Reports of chunks stored since the last call, waiting up to `timeout` s for one."""
        pending = [r for w in self.workers for r in w.in_flight]
        if not pending:  # every worker idle; wait for the first one to be asked again
            resting = [w.retry_at - time.monotonic() for w in self.workers if w.alive]
            time.sleep(max(0.0, min(min(resting, default=0.0), timeout)))
            return []
        ready, _ = ray.wait(pending, num_returns=1, timeout=timeout)
        if not ready:
            if timeout > 0:
                raise DistributedError(f"no actor worker delivered a chunk within {timeout:g} s "
                                       "(distributed.call_timeout_s)")
            return []
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        done, reports = set(ready), []
        for w in self.workers:
            while w.in_flight and w.in_flight[0] in done:  # in order, per worker
                reports += self._collect(w, w.in_flight.popleft())
        return reports

    def drain(self) -> list[dict[str, Any]]:
        """Wait for every chunk requested (each up to the timeout); their reports. Then
        `env_steps` counts every row the shards hold, as a checkpoint needs."""
        reports: list[dict[str, Any]] = []
        for w in self.workers:
            while w.in_flight:
                reports += self._collect(w, w.in_flight.popleft())
        return reports

    def _collect(self, w: WorkerState, ref: Any) -> list[dict[str, Any]]:
        try:
            report = get(ref, self.timeout, "actor worker (chunk)")
        except RayError as exc:
            if not isinstance(exc, RayActorError) and \
                    not isinstance(getattr(exc, "cause", None), RayActorError):
                raise
            # The chunk may be lost; the shard sees that by the chunks' numbers and closes
            # the stream there. A worker that is restarting or unreachable
            # (ActorUnavailableError) is asked again after a pause, and dropped only when it
            # stays so longer than the timeout; one that died counts a failure.
            w.lost_chunks += 1
            now = time.monotonic()
            if isinstance(exc, ActorUnavailableError):
                w.unavailable_since = w.unavailable_since or now
                w.retry_at = now + UNAVAILABLE_BACKOFF_S
                if now - w.unavailable_since > self.timeout:
                    w.alive = False
            else:
                w.failures += 1
            if w.failures >= MAX_CONSECUTIVE_FAILURES:
                w.alive = False
            if not any(x.alive for x in self.workers):
                raise DistributedError("every actor worker died repeatedly; see the Ray logs "
                                       "(ray logs / /tmp/ray/session_latest/logs)") from None
            return []
        w.failures, w.unavailable_since = 0, None
        if report["incarnation"] != w.incarnation:
            w.restarts += w.incarnation != ""
            w.incarnation = report["incarnation"]
        w.env_steps += report["steps"]
        w.episodes += len(report["episodes"])
        w.node_id = report["node_id"]
        self.env_steps += report["steps"]
        self.num_episodes += len(report["episodes"])
        return [report]

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w.handle, no_restart=True)


class ShardedReplay:
    """The replay interface over `S` shard actors: one batch is drawn from the union of
    every shard, in proportion to priority (`wnrl.distributed.sampling`); batches of the
    learner's size are prefetched. Batch ids are `shard_id * S + j` for shard j."""

    def __init__(self, shards: list[Any], timeout: float, batch_size: int,
                 prefetch: int = 2, seed: int = 0) -> None:
        self.shards, self.timeout, self.prefetch = shards, timeout, prefetch
        self.batch_size = batch_size  # the learner's: these batches are prefetched
        self._queue: collections.deque = collections.deque()  # asked batches: [(shard, ref)]
        self._mass = np.zeros(len(shards))  # each shard's last reported sampling mass
        self._rng = np.random.default_rng(seed)
        self._priority_refs: collections.deque = collections.deque()

    def _ask(self, batch_size: int) -> list[tuple[int, Any]]:
        """Split a batch over the shards by their masses; every shard is asked (a zero count
        returns only its mass, which keeps the split current)."""
        if self._mass.sum() <= 0:  # none known yet: ask for the masses first
            self._gather([(j, s.sample.remote(0, 0.0)) for j, s in enumerate(self.shards)], 0, 1)
        counts, share = split(self._mass, batch_size, self._rng)
        return [(j, s.sample.remote(int(c), float(share[j])))
                for j, (s, c) in enumerate(zip(self.shards, counts))]

    def _gather(self, asked: list[tuple[int, Any]], batch_size: int, beta: float) -> Batch | None:
        draws: list[Draw] = [get(ref, self.timeout, f"replay shard {j} (sample)")
                             for j, ref in asked]
        self._mass = np.array([d.mass for d in draws], np.float64)
        batch = merge(draws, beta)
        # a shard that held less than its share (its mass was stale): draw again
        return batch if batch is not None and len(batch.index) == batch_size else None

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """B rows drawn from all shards ∝ priority, weights normalized once per batch.
        Batches of the learner's size come from a queue of `prefetch` requests (drawn with
        slightly older shard masses; their P_i, hence the weights, stay exact)."""
        for _ in range(8):
            if batch_size == self.batch_size:
                while len(self._queue) < self.prefetch:
                    self._queue.append(self._ask(batch_size))
                asked = self._queue.popleft()
            else:  # init and diagnostics: other sizes, not prefetched
                asked = self._ask(batch_size)
            batch = self._gather(asked, batch_size, beta)
            if batch is not None:
                return writable(batch)
        raise DistributedError("the replay shards hold no sampleable transitions")

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4) -> list[Batch]:
        """n batches of B: n `sample` calls in a row (Ape-X replay is prioritized, so its
        learner draws one batch per update)."""
        return [self.sample(batch_size, beta) for _ in range(n)]

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Priorities of a batch's rows, each sent to its shard without waiting (at most
        two requests per shard in flight)."""
        ids, shard = np.divmod(np.asarray(index, np.int64), len(self.shards))
        priority = np.asarray(priority)
        for j in np.unique(shard):
            self._priority_refs.append(
                self.shards[j].update_priorities.remote(ids[shard == j], priority[shard == j]))
        while len(self._priority_refs) > 2 * len(self.shards):
            get(self._priority_refs.popleft(), self.timeout, "replay shard (priorities)")

    def stats(self) -> list[dict[str, list]]:
        return [get(s.stats.remote(), self.timeout, f"replay shard {j} (stats)")
                for j, s in enumerate(self.shards)]

    def state_dict(self) -> dict[str, Any]:
        return {"format": "sharded-1", "shards": [
            get(s.state_dict.remote(), self.timeout, f"replay shard {j} (state)")
            for j, s in enumerate(self.shards)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shards = state.get("shards") if state.get("format") == "sharded-1" else None
        if shards is None or len(shards) != len(self.shards):
            have = len(shards) if shards is not None else "another layout"
            raise ConfigError(f"the checkpoint's replay has {have} shards; this config has "
                              f"distributed.num_replay_shards={len(self.shards)}: resume with "
                              f"distributed.num_replay_shards={have}")
        for j, (s, st) in enumerate(zip(self.shards, shards)):
            try:
                get(s.load_state_dict.remote(st), self.timeout, f"replay shard {j} (load)")
            except RayTaskError as exc:  # a ConfigError inside the shard: re-raise it plain
                raise exc.cause if isinstance(exc.cause, ConfigError) else exc from None
