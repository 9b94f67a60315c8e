"""The Ape-X loop (Horgan et al. 2018) on Ray core: many actors, replay shards, one learner.

    workers (Ray actors, 1 CPU each, fixed eps_i) --chunks, pushed--> replay shards (0 CPU)
    shards --prefetched parts of each batch, drawn by priority--> learner (this process)
    learner --priorities--> shards;  learner --folded weights, every K updates--> workers

`build_apex(cfg)` connects to Ray, checks the cluster and makes the parts
(`ApexParts`); `ApexTrainer` is `wnrl.training.trainer.Trainer` with its own loop
(`run`) and a checkpoint that drains the workers first: restore, data-dependent init,
updates, evaluation and logging are the Trainer's own, so the
run directory, TensorBoard tags and checkpoint payload are those of single-machine
training (`scripts/evaluate.py` reads them unchanged). Extra tags:
`actors/<i>/episode_return`, `actors/<i>/env_steps_per_s`, `perf/replay_ratio`.

Backpressure: each worker has at most `distributed.max_chunks_in_flight` chunks
requested and not yet stored, and `wnrl.rate_limiter.RateLimiter` (the async mode's
rule, with `train.async_tolerance`, its band capped at twice the env steps the
workers can have in flight) gates both sides on the env steps stored, so the
replay ratio `train.updates_per_step` holds whatever the number of actors.
A checkpoint first waits for every requested chunk, so its `env_steps` counts
every row its replay holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from wnrl.agents import get_agent
from wnrl.config import Config, ConfigError
from wnrl.core.types import Episode, Transition
from wnrl.distributed import cluster
from wnrl.distributed.pool import ActorPool, DistributedError, ShardedReplay
from wnrl.distributed.shard import ReplayShard
from wnrl.distributed.workers import ActorWorker
from wnrl.envs import make_env
from wnrl.learner import Learner
from wnrl.losses import make_loss
from wnrl.rate_limiter import RateLimiter
from wnrl.recipe import AgentRecipe
from wnrl.signals import StopFlag
from wnrl.training.parts import network_for, seed_everything
from wnrl.training.trainer import Trainer

MAX_UPDATES_PER_POLL = 8  # learner updates between two looks at the workers' chunks


@dataclass(frozen=True)
class EnvSpec:
    """What the driver needs of an actor worker's vector env (it runs none itself)."""

    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    num_actions: int
    num_envs: int


def _env_spec(cfg: Config) -> EnvSpec:
    probe = make_env(replace(cfg.env, num_threads=1), seed=cfg.seed, training=True, num_envs=1)
    spec = EnvSpec(probe.obs_shape, probe.obs_dtype, probe.num_actions, cfg.env.num_envs)
    probe.close()
    stack = spec.obs_shape[0] if len(spec.obs_shape) > 1 else 1
    need = cfg.distributed.num_actors * spec.num_envs * (stack + cfg.replay.n_step + 2)
    if cfg.replay.capacity < need:
        raise ConfigError(f"replay.capacity={cfg.replay.capacity} is too small for "
                          f"{cfg.distributed.num_actors} actor workers of {spec.num_envs} envs: "
                          f"must be >= {need}")
    return spec


class WorkerStreams:
    """`EpisodeStreams` of Ape-X: the workers play on through a checkpoint (nothing to cut
    or save), and a resumed run's fresh workers close the saved streams in the shards
    themselves (a new incarnation ends the old one's episodes)."""

    def record(self, transition: Transition) -> None:
        return None

    def at_save(self, step: int, cut: bool) -> dict[str, Any]:
        return {}

    def at_restore(self, step: int, saved: dict[str, Any]) -> list[str]:
        return []


@dataclass
class ApexParts:
    """An Ape-X run: the workers' env shape, the sharded replay, the learner, the pool."""

    agent: AgentRecipe
    env: EnvSpec
    replay: ShardedReplay
    learner: Learner
    actor: ActorPool
    streams: WorkerStreams
    replay_note: str = "replay in Ray replay shards (host memory)"


def build_apex(cfg: Config, start_step: int = 0,
               ) -> tuple[ApexParts, Callable[[Config, Path, ApexParts], ApexTrainer]]:
    """Connect to Ray, check resources, start shards and workers (their games seeded from
    `start_step`, the env step a resume starts at); (parts, trainer class)."""
    seed_everything(cfg.seed)
    agent = get_agent(cfg.agent)
    spec = _env_spec(cfg)
    net = network_for(cfg, spec.obs_shape, spec.num_actions)
    owned = cluster.connect(cfg)
    try:
        cluster.check_resources(cfg)
        learner = Learner(net, cfg.learner, make_loss(cfg.learner), device=cfg.learner.device)
        d = cfg.distributed
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        shard_cls = ray.remote(ReplayShard).options(num_cpus=0, max_restarts=0,
                                                    scheduling_strategy=here)
        shards = [shard_cls.remote(cfg, spec.obs_shape, spec.obs_dtype, spec.num_envs,
                                   list(range(j, d.num_actors, d.num_replay_shards)),
                                   d.num_actors, cfg.seed + j)
                  for j in range(min(d.num_replay_shards, d.num_actors))]
        worker_cls = ray.remote(ActorWorker).options(
            num_cpus=1, max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD")
        pool = ActorPool(cfg, worker_cls, shards, spec.num_envs, start_step)
        pool.owns_ray = owned
        pool.set_weights(learner.weights())
    except BaseException:
        cluster.shutdown(owned)
        raise
    replay = ShardedReplay(shards, d.call_timeout_s, cfg.learner.batch_size, seed=cfg.seed)
    return ApexParts(agent, spec, replay, learner, pool, WorkerStreams()), ApexTrainer


class ApexTrainer(Trainer):
    """`Trainer` whose loop drives the Ray workers and shards (see module doc)."""

    def __init__(self, cfg: Config, run_dir: Path, parts: ApexParts) -> None:
        super().__init__(cfg, run_dir, parts)
        self.pool, self.replay = parts.actor, parts.replay
        self._rate_mark: tuple[float, list[int]] = (time.perf_counter(), [])

    def run(self, stop: StopFlag) -> int:
        """Train until total_steps or a stop signal; returns the process exit code."""
        try:
            self.log_learner_mode()
            return self._loop(stop)
        except (DistributedError, RayError) as exc:
            self.log.message(f"error: distributed training stopped: {_one_line(exc)}")
            return 1
        finally:
            self.pool.shutdown()
            cluster.shutdown(self.pool.owns_ray)

    def _limiter(self) -> RateLimiter:
        """The replay-ratio rule; the band is capped at twice what the workers can have in
        flight, so a slower learner does not hold the ratio at the band's bottom."""
        d = self.cfg.distributed
        in_flight = d.num_actors * d.max_chunks_in_flight * self.pool.chunk_env_steps
        return RateLimiter(self.cfg.train.updates_per_step, self.cfg.train.async_tolerance,
                           start_step=self.update_base[0], slack_steps=self.pool.chunk_env_steps,
                           max_ahead_steps=2 * in_flight)

    def _loop(self, stop: StopFlag) -> int:
        pool, cfg = self.pool, self.cfg
        limiter, base_updates = self._limiter(), self.update_base[1]
        self._rate_mark = (time.perf_counter(), [w.env_steps for w in pool.workers])
        step = pool.env_steps
        while (step < cfg.train.total_steps and stop.requested is None
               and not self.reached_stop_return()):
            updates = self.parts.learner.num_updates - base_updates
            pool.refill(lambda n, u=updates: limiter.can_act(
                pool.env_steps + pool.steps_in_flight, u, n))
            may_learn = limiter.can_update(step, updates)
            self._record(pool.poll(0.0 if may_learn else cfg.distributed.call_timeout_s))
            step = pool.env_steps
            if may_learn:
                self._learn_some(step, limiter, base_updates)
            if self.schedule.due(step, "log"):
                self._log_actor_rates(step)
            self.periodic(step)
        per_worker = ", ".join(str(w.env_steps) for w in pool.workers)
        restarts = sum(w.restarts for w in pool.workers)
        self.log.message(f"actor workers: {per_worker} env steps, {restarts} restarts")
        return self.finish(step, stop)

    def _record(self, reports: list[dict[str, Any]]) -> None:
        """Log the episodes that stored chunks finished."""
        for rep in reports:
            i = rep["worker"]
            self.record_episodes([Episode(r, n, i) for r, n in rep["episodes"]],
                                 self.pool.env_steps)
            for ret, _ in rep["episodes"]:
                self.log.scalar(f"actors/{i}/episode_return", ret, self.pool.env_steps)

    def save_checkpoint(self, step: int, cut: bool = True) -> Path:
        """Wait for every requested chunk, then save at the env steps stored: the replay
        in the checkpoint holds exactly the rows its `env_steps` counts."""
        self._record(self.pool.drain())
        return super().save_checkpoint(self.pool.env_steps, cut)

    def _learn_some(self, step: int, limiter: RateLimiter, base_updates: int) -> None:
        """Up to MAX_UPDATES_PER_POLL updates the replay ratio allows at `step`."""
        if not self.initialized:
            self.initialize()
        beta = self.beta(step)
        for _ in range(MAX_UPDATES_PER_POLL):
            if not limiter.can_update(step, self.parts.learner.num_updates - base_updates):
                break
            if self.update_once(step, beta):  # Trainer's: sample, update, priorities
                self.sync_weights()

    def _log_actor_rates(self, step: int) -> None:
        now, steps = time.perf_counter(), [w.env_steps for w in self.pool.workers]
        t0, before = self._rate_mark
        dt = max(now - t0, 1e-9)
        for i, (a, b) in enumerate(zip(steps, before or [0] * len(steps))):
            self.log.scalar(f"actors/{i}/env_steps_per_s", (a - b) / dt, step)
        self._rate_mark = (now, steps)
        base_step, base_updates = self.update_base
        if step > base_step:  # updates per env step since learning started (as async logs it)
            self.log.scalar("perf/replay_ratio",
                            (self.parts.learner.num_updates - base_updates) / (step - base_step),
                            step)

    def worker_report(self) -> list[dict[str, Any]]:
        """Per worker: epsilon, env steps stored, episodes, restarts, node (for tests/notes)."""
        return [{"epsilon": w.epsilon, "env_steps": w.env_steps, "episodes": w.episodes,
                 "restarts": w.restarts, "node_id": w.node_id} for w in self.pool.workers]


def _one_line(exc: BaseException) -> str:
    """A Ray error in one line: the remote exception's type and message, not its traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        where = str(exc).split("(", 1)[0].replace("ray::", "").strip()
        return f"{where}: {type(cause).__name__}: {_one_line(cause)}"
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__
