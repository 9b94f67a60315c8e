"""The benchmark's end-to-end figures (5. and 6. of `wnrl.experiments.benchmark`).

5. the learner-only bound: updates/s of the agent's network at batch 32 x 4 env
   steps per update, in the benchmark's learner mode;
6. end-to-end env steps/s of a real training run (`build` and `Trainer`, logging
   included) in the sync and async loops, over `measure_steps` env steps after
   learning starts, counted at the replay ratio the updates done cover.

The machine's speed drifts by 10-20% within minutes, so each end-to-end run is timed
in `e2e_chunks` parts with the bound measured before, between and after them: a
part's ratio to the bound is its rate over the mean of the bounds on either side,
and the run's ratio is the median over its parts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wnrl.actor import Actor
from wnrl.agents import get_agent
from wnrl.config import (
    ActorConfig,
    Config,
    EnvConfig,
    LearnerConfig,
    NetworkConfig,
    ReplayConfig,
    TrainConfig,
)
from wnrl.experiments.bench_config import OBS, BenchConfig, random_batch
from wnrl.learner import Learner
from wnrl.logger import RunLogger
from wnrl.networks import make_q_network
from wnrl.timing import interleaved
from wnrl.training import LOOPS, Trainer, build


def e2e_config(bc: BenchConfig, mode: str, runs_dir: str) -> Config:
    """DQN defaults (batch 32, one update per 4 env steps) with a fixed small epsilon."""
    return Config(
        agent=bc.agent, seed=0,
        env=EnvConfig(id=bc.game, num_envs=bc.num_envs),
        network=NetworkConfig(),
        replay=ReplayConfig(capacity=bc.replay_capacity),
        learner=LearnerConfig(optimizer="adam", batch_size=32, device=bc.device,
                              target_update_period=bc.target_update_period,
                              compile=bc.compile, precision=bc.precision,
                              cuda_graph=bc.cuda_graph),
        actor=ActorConfig(eps_start=0.01, eps_end=0.01, device=bc.actor_device),
        train=TrainConfig(total_steps=bc.learning_starts + bc.e2e_chunks * chunk_steps(bc)
                          + (10 + bc.e2e_chunks) * bc.num_envs,
                          learning_starts=bc.learning_starts, updates_per_step=0.25, mode=mode,
                          eval_period=0, noise_period=0, checkpoint_period=10**9,
                          log_period=10**9, runs_dir=runs_dir))


def chunk_steps(bc: BenchConfig) -> int:
    """Env steps timed per part of an end-to-end run (at least one vector step)."""
    return max(bc.num_envs, bc.measure_steps // bc.e2e_chunks)


class _StopAt:
    """A `StopFlag` stand-in that asks a loop to stop once the actor reaches `steps`."""

    exit_code = 0

    def __init__(self, actor: Actor, steps: int) -> None:
        self.actor, self.steps = actor, steps

    @property
    def requested(self) -> int | None:
        return 1 if self.actor.env_steps >= self.steps else None


def bench_end_to_end(bc: BenchConfig, mode: str,
                     between: Callable[[], object] = lambda: None) -> dict[str, Any]:
    """6. env steps/s over `measure_steps` env steps after learning starts (and the init),
    timed in `bc.e2e_chunks` parts, `between()` called (untimed) before, between and after
    them. `chunks` lists each part's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = e2e_config(bc, mode, tmp)
        trainer = Trainer(cfg, Path(tmp), build(cfg))
        trainer.log = RunLogger(Path(tmp), cfg.train.total_steps, progress=False)
        actor, loop = trainer.parts.actor, LOOPS[mode]
        loop(trainer, _StopAt(actor, bc.learning_starts + 4 * bc.num_envs))  # incl. first update
        per_chunk = chunk_steps(bc)
        chunks = []
        for _ in range(bc.e2e_chunks):
            between()
            s0, u0, t0 = actor.env_steps, trainer.parts.learner.num_updates, time.perf_counter()
            loop(trainer, _StopAt(actor, s0 + per_chunk))
            dt = time.perf_counter() - t0
            chunks.append(_rates(actor.env_steps - s0, trainer.parts.learner.num_updates - u0,
                                 dt, cfg.train.updates_per_step))
        between()
        trainer.parts.env.close()
        trainer.log.close()
    steps, updates = sum(c["env_steps"] for c in chunks), sum(c["updates"] for c in chunks)
    return {**_rates(steps, updates, sum(c["seconds"] for c in chunks),
                     cfg.train.updates_per_step), "chunks": chunks}


def _rates(steps: int, updates: int, seconds: float, ratio: float) -> dict[str, Any]:
    """Rates of `steps` env steps and `updates` updates in `seconds`. The async actor may
    run ahead of the ratio by its tolerance: `env_steps_per_s` counts only the env steps
    the updates done cover, so both modes are compared at the same replay ratio."""
    covered = min(steps, updates / ratio)
    return {"env_steps_per_s": covered / seconds, "raw_env_steps_per_s": steps / seconds,
            "updates_per_env_step": updates / steps, "env_steps": steps, "updates": updates,
            "seconds": seconds}


class Bound:
    """5. learner-only env steps/s: updates/s of the agent's network at batch 32 x 4, in
    the benchmark's learner mode (one learner, compiled once, timed whenever asked)."""

    def __init__(self, bc: BenchConfig, num_actions: int = 6) -> None:
        self.bc = bc
        self.learner = Learner(make_q_network(OBS, num_actions, norm=get_agent(bc.agent).norm),
                               LearnerConfig(optimizer="adam", batch_size=32, device=bc.device,
                                             compile=bc.compile, precision=bc.precision,
                                             cuda_graph=bc.cuda_graph))
        self.batch = random_batch(np.random.default_rng(4), 32, num_actions)

    def measure(self) -> float:
        t = interleaved({"u": lambda: self.learner.update(self.batch)},
                        self.bc.updates_per_round, self.bc.repeats)
        return 4.0 / t["u"]


def bench_e2e_and_bound(bc: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """5. and 6.: the bound measured before, between and after each end-to-end run's parts."""
    res: dict[str, Any] = {}
    bound = Bound(bc)
    every: list[float] = []
    for mode in ("sync", "async"):
        log(f"measuring end-to-end {mode} ...")
        bounds: list[float] = []
        e2e = bench_end_to_end(bc, mode, between=lambda b=bounds: b.append(bound.measure()))
        for chunk, before, after in zip(e2e["chunks"], bounds, bounds[1:]):
            chunk["bound_env_steps_per_s"] = (before + after) / 2
            chunk["ratio_to_bound"] = chunk["env_steps_per_s"] / chunk["bound_env_steps_per_s"]
        e2e["bound_env_steps_per_s"] = statistics.median(bounds)
        e2e["ratio_to_bound"] = statistics.median(c["ratio_to_bound"] for c in e2e["chunks"])
        res[f"e2e_{mode}"] = e2e
        every += bounds
    res["bound"] = {"agent": bc.agent, "mode": bound.learner.mode,
                    "env_steps_per_s": statistics.median(every),
                    "updates_per_s": statistics.median(every) / 4, "runs": every}
    return res
