"""The benchmark's end-to-end figures (5. and 6. of `wnrl.experiments.benchmark`).

5. the learner-only bound: updates/s of the agent's network at batch 32 x 4 env
   steps per update, in the benchmark's learner mode;
6. end-to-end env steps/s of a real training run (`build` and `Trainer`, logging
   included) in the sync and async loops, over `measure_steps` env steps after
   learning starts, counted at the replay ratio the updates done cover.

The bound is measured right before and after each end-to-end run (the load drifts).
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
        train=TrainConfig(total_steps=bc.learning_starts + bc.measure_steps + 10 * bc.num_envs,
                          learning_starts=bc.learning_starts, updates_per_step=0.25, mode=mode,
                          eval_period=0, noise_period=0, checkpoint_period=10**9,
                          log_period=10**9, runs_dir=runs_dir))


class _StopAt:
    """A `StopFlag` stand-in that asks a loop to stop once the actor reaches `steps`."""

    exit_code = 0

    def __init__(self, actor: Actor, steps: int) -> None:
        self.actor, self.steps = actor, steps

    @property
    def requested(self) -> int | None:
        return 1 if self.actor.env_steps >= self.steps else None


def bench_end_to_end(bc: BenchConfig, mode: str) -> dict[str, Any]:
    """6. env steps/s over `measure_steps` env steps after learning starts (and the init)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = e2e_config(bc, mode, tmp)
        trainer = Trainer(cfg, Path(tmp), build(cfg))
        trainer.log = RunLogger(Path(tmp), cfg.train.total_steps, progress=False)
        actor, loop = trainer.parts.actor, LOOPS[mode]
        loop(trainer, _StopAt(actor, bc.learning_starts + 4 * bc.num_envs))  # incl. first update
        s0, u0, t0 = actor.env_steps, trainer.parts.learner.num_updates, time.perf_counter()
        loop(trainer, _StopAt(actor, s0 + bc.measure_steps))
        dt = time.perf_counter() - t0
        steps, updates = actor.env_steps - s0, trainer.parts.learner.num_updates - u0
        trainer.parts.env.close()
        trainer.log.close()
    # the actor may run ahead of the ratio by the async tolerance: count only the env
    # steps the updates done cover, so both modes are compared at the same replay ratio
    covered = min(steps, updates / cfg.train.updates_per_step)
    return {"env_steps_per_s": covered / dt, "raw_env_steps_per_s": steps / dt,
            "updates_per_env_step": updates / steps, "env_steps": steps, "seconds": dt}


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
    """5. and 6.: the bound measured right before and after each end-to-end run."""
    res: dict[str, Any] = {}
    bound = Bound(bc)
    bounds = [bound.measure()]
    for mode in ("sync", "async"):
        log(f"measuring end-to-end {mode} ...")
        e2e = bench_end_to_end(bc, mode)
        bounds.append(bound.measure())
        e2e["bound_env_steps_per_s"] = (bounds[-2] + bounds[-1]) / 2
        e2e["ratio_to_bound"] = e2e["env_steps_per_s"] / e2e["bound_env_steps_per_s"]
        res[f"e2e_{mode}"] = e2e
    res["bound"] = {"agent": bc.agent, "mode": bound.learner.mode,
                    "env_steps_per_s": statistics.median(bounds),
                    "updates_per_s": statistics.median(bounds) / 4, "runs": bounds}
    return res
