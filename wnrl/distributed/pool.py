"""Driver-side handles: the actor-worker pool and the sharded replay.

Both present the single-machine interfaces to `wnrl.train.Trainer`, so its
checkpoint, restore, init and logging code runs unchanged in the distributed loop:
`ActorPool` is the actor (`set_weights`, `epsilon`, `env_steps`, `cut_episodes`,
`state_dict`) and `ShardedReplay` is the replay (`sample`, `update_priorities`,
`state_dict`). Data never passes through the driver: a worker's chunk goes from
its object store straight to its shard (`shard.add_chunk.remote(chunk_ref)`).

Every blocking call waits at most `distributed.call_timeout_s` and raises
`DistributedError` with one line naming what did not answer.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from wnrl.config import Config, ConfigError
from wnrl.replay import Batch, Transition
from wnrl.schedules import apex_epsilons

MAX_CONSECUTIVE_FAILURES = 5  # a worker that dies this often without delivering is dropped


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
    in_flight: collections.deque = field(default_factory=collections.deque)  # add refs
    weights_version: int = -1
    env_steps: int = 0
    episodes: int = 0
    failures: int = 0  # consecutive
    restarts: int = 0  # incarnations seen after the first one
    lost_chunks: int = 0  # chunks lost with a dead incarnation
    incarnation: str = ""
    alive: bool = True
    node_id: str = ""


class ActorPool:
    """A actor workers (Ray actors with `max_restarts`) feeding their replay shards."""

    def __init__(self, cfg: Config, worker_cls: Any, shards: list[Any], num_envs: int) -> None:
        d = cfg.distributed
        self.cfg, self.shards, self.timeout = cfg, shards, d.call_timeout_s
        self.chunk_env_steps = d.chunk_steps * num_envs
        eps = apex_epsilons(d.num_actors)
        self.workers = [WorkerState(worker_cls.remote(cfg, i, eps[i]), eps[i])
                        for i in range(d.num_actors)]
        self.env_steps = 0  # env steps stored in the replay
        self.num_episodes = 0
        self._weights_ref: Any = None
        self._version = -1
        self.owns_ray = False  # set by build_apex: shut Ray down at the end

    # ---- the Actor interface used by Trainer ----------------------------------------
    @property
    def epsilon(self) -> float:
        return float(np.mean([w.epsilon for w in self.workers]))

    def set_weights(self, weights: dict) -> None:
        """Publish folded weights through the object store; workers load them with
        their next chunk request."""
        self._weights_ref = ray.put(weights)
        self._version += 1

    def cut_episodes(self, seed: int | None = None) -> Transition:
        """Workers never pause for a checkpoint: nothing is cut here (zero rows). A resumed
        run's fresh workers close the saved streams in the shards instead."""
        z = np.zeros(0)
        return Transition(z, z.astype(np.int64), z.astype(np.float32), *(z.astype(bool),) * 3)

    def reset_envs(self, seed: int | None = None) -> None:
        """Workers start new games on their own after a restore: nothing to do."""

    def state_dict(self) -> dict[str, Any]:
        rng = np.random.default_rng(self.cfg.seed).bit_generator.state
        return {"env_steps": self.env_steps, "num_episodes": self.num_episodes, "rng": rng,
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
        """Ask worker i for one chunk, routed straight to its shard."""
        w = self.workers[i]
        weights = None
        if w.weights_version < self._version:
            weights, w.weights_version = self._weights_ref, self._version
        chunk = w.handle.collect.remote(self.cfg.distributed.chunk_steps, weights)
        w.in_flight.append(self.shards[i % len(self.shards)].add_chunk.remote(chunk))

    def refill(self, may_act: Any) -> None:
        """Top every live worker up to `max_chunks_in_flight` while `may_act(steps)` says
        the replay ratio allows `steps` more env steps."""
        limit = self.cfg.distributed.max_chunks_in_flight
        while may_act(self.chunk_env_steps):
            free = [i for i, w in enumerate(self.workers) if w.alive and len(w.in_flight) < limit]
            if not free:
                return
            # the least-loaded worker first, so that every worker gets its share
            self.request(min(free, key=lambda i: (len(self.workers[i].in_flight),
                                                  self.workers[i].env_steps)))

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Reports of chunks stored since the last call, waiting up to `timeout` s for one."""
        pending = [r for w in self.workers for r in w.in_flight]
        if not pending:
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

    def _collect(self, w: WorkerState, ref: Any) -> list[dict[str, Any]]:
        try:
            report = get(ref, self.timeout, "replay shard (add_chunk)")
        except RayError as exc:
            if not isinstance(exc, RayActorError) and \
                    not isinstance(getattr(exc, "cause", None), RayActorError):
                raise
            w.failures += 1
            w.lost_chunks += 1
            w.weights_version = -1  # a restarted worker needs the weights again
            if w.failures >= MAX_CONSECUTIVE_FAILURES:
                w.alive = False
            if not any(x.alive for x in self.workers):
                raise DistributedError("every actor worker died repeatedly; see the Ray logs "
                                       "(ray logs / /tmp/ray/session_latest/logs)") from None
            return []
        w.failures = 0
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
    """The replay interface over `S` shard actors; the learner's batches are prefetched."""

    def __init__(self, shards: list[Any], timeout: float, batch_size: int,
                 prefetch: int = 2) -> None:
        self.shards, self.timeout, self.prefetch = shards, timeout, prefetch
        self.batch_size = batch_size  # the learner's: these batches are prefetched
        self._queue: collections.deque = collections.deque()  # (shard, ref)
        self._next, self._last_shard = 0, 0
        self._priority_refs: collections.deque = collections.deque()

    def _ask(self, batch_size: int, beta: float) -> None:
        j = self._next % len(self.shards)
        self._next += 1
        self._queue.append((j, self.shards[j].sample.remote(batch_size, beta)))

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """A batch from the shards, round robin. Batches of the learner's size come from a
        queue that keeps `prefetch` requests in flight (sampled with a slightly older beta);
        `update_priorities` goes to the shard of the last batch."""
        for _ in range(4 * len(self.shards) + 4):
            if batch_size == self.batch_size:
                while len(self._queue) < self.prefetch:
                    self._ask(batch_size, beta)
                j, ref = self._queue.popleft()
            else:  # init and diagnostics: other sizes, not prefetched
                j = self._next % len(self.shards)
                self._next += 1
                ref = self.shards[j].sample.remote(batch_size, beta)
            batch = get(ref, self.timeout, f"replay shard {j} (sample)")
            if batch is not None and len(batch.index):
                self._last_shard = j
                return writable(batch)
        raise DistributedError("the replay shards hold no sampleable transitions")

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Priorities for the last batch, sent to its shard without waiting (at most two
        requests per shard in flight)."""
        ref = self.shards[self._last_shard].update_priorities.remote(index, priority)
        self._priority_refs.append(ref)
        while len(self._priority_refs) > 2 * len(self.shards):
            get(self._priority_refs.popleft(), self.timeout, "replay shard (priorities)")

    def add(self, transition: Transition) -> None:
        """Only the pool's zero-row `cut_episodes` comes here: rows go worker -> shard."""
        if len(transition.action):
            raise ValueError("ShardedReplay.add: rows reach the shards from the actor workers")

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
            raise ConfigError("the checkpoint's replay does not match distributed.num_replay_"
                              f"shards={len(self.shards)}: resume with the checkpoint's setting "
                              "or set replay.save_in_checkpoint=false")
        for j, (s, st) in enumerate(zip(self.shards, shards)):
            try:
                get(s.load_state_dict.remote(st), self.timeout, f"replay shard {j} (load)")
            except RayTaskError as exc:  # a ConfigError inside the shard: re-raise it plain
                raise exc.cause if isinstance(exc.cause, ConfigError) else exc from None
