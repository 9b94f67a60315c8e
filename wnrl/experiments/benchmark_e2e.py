"""The benchmark's end-to-end figures (5. and 6. of `wnrl.experiments.benchmark`).

5. the learner-only bound: updates/s of the agent's network at batch 32 x 4 env
   steps per update, in the benchmark's learner mode; and 4 updates one at a time
   against one `Learner.update_many` of 4 (on a GPU: 4 graph replays against one);
6. end-to-end env steps/s of a real training run (`build` and `Trainer`, logging
   included) in the sync and async loops, over `measure_steps` env steps after
   learning starts, counted at the replay ratio the updates done cover.

The machine's speed drifts by 10-20% within minutes, so each end-to-end run is timed
in `e2e_chunks` parts with the bounds measured before, between and after them (a
`Yardstick`: every side's learner, interleaved): a part's ratio to its side's bound is
its rate over the mean of the bounds on either side, and the run's ratio is the median
over its parts. The peer's runs (`benchmark_peer`) are timed by the same code.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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

UPDATES_PER_STEP = 0.25  # the DQN default every run is timed at: one update per 4 env steps


def e2e_config(bc: BenchConfig, mode: str, runs_dir: str, replay_device: str = "auto") -> Config:
    """DQN defaults (batch 32, one update per 4 env steps) with a fixed small epsilon."""
    return Config(
        agent=bc.agent, seed=0,
        env=EnvConfig(id=bc.game, num_envs=bc.num_envs),
        network=NetworkConfig(),
        replay=ReplayConfig(capacity=bc.replay_capacity, device=replay_device),
        learner=LearnerConfig(optimizer="adam", batch_size=32, device=bc.device,
                              target_update_period=bc.target_update_period,
                              compile=bc.compile, precision=bc.precision,
                              cuda_graph=bc.cuda_graph),
        actor=ActorConfig(eps_start=0.01, eps_end=0.01, device=bc.actor_device),
        train=TrainConfig(total_steps=bc.learning_starts + bc.e2e_chunks * chunk_steps(bc)
                          + (10 + bc.e2e_chunks) * bc.num_envs,
                          learning_starts=bc.learning_starts, updates_per_step=UPDATES_PER_STEP,
                          mode=mode, eval_period=0, noise_period=0, checkpoint_period=10**9,
                          log_period=10**9, runs_dir=runs_dir))


def chunk_steps(bc: BenchConfig) -> int:
    """Env steps timed per part of an end-to-end run (at least one vector step)."""
    return max(bc.num_envs, bc.measure_steps // bc.e2e_chunks)


class Run(Protocol):
    """A training run that can be advanced in parts: wnrl's (`WnrlRun`) or the peer's."""

    num_envs: int

    def advance(self, env_steps: int) -> tuple[int, int]:
        """Train until at least `env_steps` more env steps are done -> (env steps, updates)."""
        ...

    def close(self) -> None: ...


class _StopAt:
    """A `StopFlag` stand-in that asks a loop to stop once the actor reaches `steps`."""

    exit_code = 0

    def __init__(self, actor: Actor, steps: int) -> None:
        self.actor, self.steps = actor, steps

    @property
    def requested(self) -> int | None:
        return 1 if self.actor.env_steps >= self.steps else None


class WnrlRun:
    """A real wnrl training run (`build`, `Trainer`, the `mode` loop) at `e2e_config`;
    `replay_note` says where its replay ended up."""

    def __init__(self, bc: BenchConfig, mode: str, replay_device: str = "auto") -> None:
        self._tmp = tempfile.TemporaryDirectory()
        cfg = e2e_config(bc, mode, self._tmp.name, replay_device)
        parts = build(cfg)
        self.replay_note = parts.replay_note
        self.trainer = Trainer(cfg, Path(self._tmp.name), parts)
        self.trainer.log = RunLogger(Path(self._tmp.name), cfg.train.total_steps, progress=False)
        self.loop, self.num_envs = LOOPS[mode], bc.num_envs

    def advance(self, env_steps: int) -> tuple[int, int]:
        actor, learner = self.trainer.parts.actor, self.trainer.parts.learner
        s0, u0 = actor.env_steps, learner.num_updates
        self.loop(self.trainer, _StopAt(actor, s0 + env_steps))
        return actor.env_steps - s0, learner.num_updates - u0

    def close(self) -> None:
        self.trainer.parts.env.close()
        self.trainer.log.close()
        self._tmp.cleanup()


def time_in_parts(run: Run, bc: BenchConfig,
                  between: Callable[[], object] = lambda: None) -> dict[str, Any]:
    """6. env steps/s of `run` over `measure_steps` env steps after learning starts (and
    its first update), timed in `bc.e2e_chunks` parts, `between()` called (untimed)
    before, between and after them; closes `run`. `chunks` lists each part's figures."""
    try:
        run.advance(bc.learning_starts + 4 * run.num_envs)
        chunks = []
        for _ in range(bc.e2e_chunks):
            between()
            t0 = time.perf_counter()
            steps, updates = run.advance(chunk_steps(bc))
            chunks.append(_rates(steps, updates, time.perf_counter() - t0, UPDATES_PER_STEP))
        between()
    finally:
        run.close()
    steps, updates = sum(c["env_steps"] for c in chunks), sum(c["updates"] for c in chunks)
    return {**_rates(steps, updates, sum(c["seconds"] for c in chunks), UPDATES_PER_STEP),
            "chunks": chunks, "num_envs": run.num_envs}


def _rates(steps: int, updates: int, seconds: float, ratio: float) -> dict[str, Any]:
    """Rates of `steps` env steps and `updates` updates in `seconds`. The async actor may
    run ahead of the ratio by its tolerance: `env_steps_per_s` counts only the env steps
    the updates done cover, so both modes are compared at the same replay ratio."""
    covered = min(steps, updates / ratio)
    return {"env_steps_per_s": covered / seconds, "raw_env_steps_per_s": steps / seconds,
            "updates_per_env_step": updates / steps, "env_steps": steps, "updates": updates,
            "seconds": seconds}


def wnrl_update(bc: BenchConfig, num_actions: int = 6) -> tuple[Learner, Callable[[], object]]:
    """5. the learner of the bound (the agent's network at batch 32, the benchmark's
    learner mode) and one update of it on a fixed random batch."""
    learner = Learner(make_q_network(OBS, num_actions, norm=get_agent(bc.agent).norm),
                      LearnerConfig(optimizer="adam", batch_size=32, device=bc.device,
                                    compile=bc.compile, precision=bc.precision,
                                    cuda_graph=bc.cuda_graph))
    batch = random_batch(np.random.default_rng(4), 32, num_actions)
    return learner, lambda: learner.update(batch)


def bench_update_runs(bc: BenchConfig, run: int = 4, num_actions: int = 6) -> dict[str, Any]:
    """5b. the several-updates-per-replay lever: `run` updates one at a time
    (`Learner.update`, one graph replay and one metrics copy each) against one
    `Learner.update_many` of `run` batches, interleaved, in the bound's learner mode;
    ms per update on each side and their ratio."""
    learner, _ = wnrl_update(bc, num_actions)
    rng = np.random.default_rng(5)
    batches = [random_batch(rng, 32, num_actions) for _ in range(run)]
    learner.update_many(batches)  # compile / capture both paths outside the timing
    for b in batches:
        learner.update(b)
    t = interleaved({"single": lambda: [learner.update(b) for b in batches],
                     "runs": lambda: learner.update_many(batches)},
                    bc.updates_per_round, bc.repeats)
    return {"mode": learner.mode, "run": run, "single_ms_per_update": 1e3 * t["single"] / run,
            "runs_ms_per_update": 1e3 * t["runs"] / run, "speedup": t["single"] / t["runs"]}


class Yardstick:
    """Learner-only bounds (env steps/s = 4 / seconds per update) of every side's learner,
    measured interleaved whenever asked; `history` keeps every measurement."""

    def __init__(self, bc: BenchConfig, updates: dict[str, Callable[[], object]]) -> None:
        self.bc, self.updates = bc, updates
        self.history: list[dict[str, float]] = []

    def measure(self) -> dict[str, float]:
        t = interleaved(self.updates, self.bc.updates_per_round, self.bc.repeats)
        self.history.append({k: 4.0 / v for k, v in t.items()})
        return self.history[-1]


def against_bound(run: Run, side: str, bc: BenchConfig, yard: Yardstick) -> dict[str, Any]:
    """`time_in_parts` with `yard` measured between the parts; each part and the run
    compared to `side`'s bound. `yardstick`: every bound at every point of this run."""
    first = len(yard.history)
    e2e = time_in_parts(run, bc, between=yard.measure)
    points = yard.history[first:]
    bounds = [p[side] for p in points]
    for chunk, before, after in zip(e2e["chunks"], bounds, bounds[1:]):
        chunk["bound_env_steps_per_s"] = (before + after) / 2
        chunk["ratio_to_bound"] = chunk["env_steps_per_s"] / chunk["bound_env_steps_per_s"]
    e2e["bound_env_steps_per_s"] = statistics.median(bounds)
    e2e["ratio_to_bound"] = statistics.median(c["ratio_to_bound"] for c in e2e["chunks"])
    e2e["yardstick"] = points
    return e2e


def e2e_key(mode: str, replay_device: str, bc: BenchConfig) -> str:
    """The results' key of an end-to-end run: e2e_<mode> for the first of
    `bc.replay_devices` (the headline), e2e_<mode>_replay_<device> for the others."""
    return f"e2e_{mode}" + ("" if replay_device == bc.replay_devices[0]
                            else f"_replay_{replay_device}")


def wnrl_runs(bc: BenchConfig, yard: Yardstick, side: str, log: Callable[[str], None],
              replay_devices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """6. the sync and async runs of `bc.agent` for each of `replay_devices` (default
    `bc.replay_devices`), each against the `side` bound of `yard` (so runs on different
    replays are compared by their ratios to the same bound, measured around each)."""
    res: dict[str, Any] = {}
    for replay_device in replay_devices or bc.replay_devices:
        for mode in ("sync", "async"):
            log(f"measuring end-to-end {mode} ({bc.agent}, replay.device={replay_device}) ...")
            run = WnrlRun(bc, mode, replay_device)
            res[e2e_key(mode, replay_device, bc)] = {
                **against_bound(run, side, bc, yard), "replay_device": replay_device,
                "replay_note": run.replay_note}
    return res


def bound_summary(bc: BenchConfig, mode: str, runs: list[float]) -> dict[str, Any]:
    """5. as the results report it: every measurement of the bound and their median."""
    return {"agent": bc.agent, "mode": mode, "env_steps_per_s": statistics.median(runs),
            "updates_per_s": statistics.median(runs) / 4, "runs": runs}


def bench_e2e_and_bound(bc: BenchConfig, log: Callable[[str], None],
                        replay_devices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """5. and 6.: the bound measured before, between and after each end-to-end run's parts
    (the runs of `replay_devices`, default all of `bc.replay_devices`)."""
    learner, update = wnrl_update(bc)
    yard = Yardstick(bc, {"wnrl": update})
    res = wnrl_runs(bc, yard, "wnrl", log, replay_devices)
    return {**res, "bound": bound_summary(bc, learner.mode, [p["wnrl"] for p in yard.history])}
