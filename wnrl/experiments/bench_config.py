"""What the benchmark measures and for how long, and its inputs (shared by its modules)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wnrl.core.types import Batch

OBS = (4, 84, 84)  # an Atari observation: 4 stacked 84x84 uint8 frames


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long (the defaults are the full run)."""

    device: str = "cpu"
    game: str = "pong"
    num_envs: int = 8  # envs in the vector env (actor forward, env, end-to-end)
    batch_sizes: tuple[int, ...] = (32, 64)
    repeats: int = 7  # interleaved rounds; each figure is the median over them
    updates_per_round: int = 10
    env_seconds: float = 10.0  # raw env stepping time
    replay_capacity: int = 100_000  # end-to-end and peer buffer size (transitions)
    learning_starts: int = 5_000  # env steps before updates (end-to-end and peer)
    measure_steps: int = 10_000  # env steps timed after learning starts
    e2e_chunks: int = 4  # parts an end-to-end run is timed in, the bound measured between
    target_update_period: int = 1_000  # updates
    agent: str = "wn_dqn"
    peer: bool = True
    compile: str = "auto"  # learner mode of the bound and end-to-end runs: LearnerConfig's
    precision: str = "auto"  # defaults (the default mode: compiled bf16 where native)
    cuda_graph: str = "false"  # of the bound and end-to-end runs (LearnerConfig's)
    actor_device: str = "auto"  # end-to-end runs' actor (ActorConfig.device)
    # end-to-end runs' replay.device, each timed (sync and async); the first is the headline
    replay_devices: tuple[str, ...] = ("auto",)
    modes: tuple[str, ...] = ()  # learner modes timed in 1. ("eager fp32", ...); () = all here
    sections: tuple[str, ...] = ()  # measurements to take (benchmark.SECTIONS); () = all

    @classmethod
    def quick(cls, **kw: Any) -> BenchConfig:
        """About a minute on two cores: fewer repeats, shorter runs."""
        base = dict(repeats=3, updates_per_round=3, env_seconds=2.0, learning_starts=1_000,
                    measure_steps=1_000, replay_capacity=20_000, batch_sizes=(32,))
        return cls(**{**base, **kw})


def random_batch(rng: np.random.Generator, b: int, num_actions: int) -> Batch:
    """A replay `Batch` of `b` random Atari transitions (uint8 obs of shape OBS)."""
    obs = rng.integers(0, 256, (b, *OBS), dtype=np.uint8)
    nxt = rng.integers(0, 256, (b, *OBS), dtype=np.uint8)
    return Batch(obs, rng.integers(0, num_actions, b).astype(np.int64),
                 rng.standard_normal(b).astype(np.float32), np.full(b, 0.99, np.float32),
                 nxt, np.ones(b, np.float32), np.arange(b, dtype=np.int64))
