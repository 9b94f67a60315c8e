"""The trainer: the learning steps and periodic work every training loop shares.

A loop (`wnrl.training.loops`: sync, async; `wnrl.distributed.apex`: Ape-X)
decides who acts and when; it calls the trainer's public methods for the rest
(the ones `wnrl.training.loop_api.LoopHost` lists):

    transition, episodes = trainer.act(step)       # one actor step (EnvError on failure)
    trainer.record_episodes(episodes, step)        # log games, stop-return window
    trainer.learn(step)                            # the updates the replay ratio makes due
    trainer.periodic(step)                         # log, evaluation, noise, checkpoint
    return trainer.finish(step, stop)              # final checkpoint and report

Learning starts at `train.learning_starts` env steps, with the paper's
data-dependent init first for WN agents (`initialize`). Updates are counted
from `update_base`, (env step, updates) at the learning start, at a resume
that refills the replay, or at a resume that changes `train.updates_per_step`,
so the ratio holds from there.
A failed run (divergence, a failed env: `fail`) never writes another checkpoint.
For a seed on CPU the sync loop is deterministic (same seed, same losses).
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wnrl.config import Config
from wnrl.core.types import Episode, Transition
from wnrl.errors import EnvError, NonFiniteError, TrainingFailed
from wnrl.learner import UpdateMetrics
from wnrl.logger import RunLogger
from wnrl.nn import data_dependent_init
from wnrl.schedules import priority_beta
from wnrl.signals import StopFlag
from wnrl.training.checkpointer import Checkpointer, RunParts
from wnrl.training.loops import LOOPS
from wnrl.training.schedule import Schedule
from wnrl.training.streams import EpisodeStreams

# the most updates `Trainer.learn` draws batches for at once
MAX_UPDATES_PER_RUN = 64


def stop_return_reached(cfg: Config, returns: deque[float] | list[float]) -> bool:
    """Whether the last `train.stop_window` episode returns average `train.stop_return`."""
    window = list(returns)[-cfg.train.stop_window:]
    return (cfg.train.stop_return is not None and len(window) == cfg.train.stop_window
            and bool(np.mean(window) >= cfg.train.stop_return))


def finished_reason(cfg: Config, state: dict[str, Any]) -> str | None:
    """Why the run whose checkpoint is `state` has nothing left to do under `cfg`, or None:
    it reached `train.total_steps` with no update owed, or its `train.stop_return`."""
    step, t = int(state["env_steps"]), cfg.train
    if step >= t.total_steps and not state.get("owed_updates", 0):
        return f"it reached train.total_steps={t.total_steps} (at env step {step})"
    if stop_return_reached(cfg, state.get("recent_returns", [])):
        return (f"the mean return of its last {t.stop_window} episodes reached "
                f"train.stop_return={t.stop_return}")
    return None


class Trainer:
    """One run's learning state and periodic work over `parts` (see the module doc).

    Args:
        cfg: the run's config.
        run_dir: where checkpoints go (the logger writes there too).
        parts: what `build` (or `build_apex`) made.
        streams: what a checkpoint does with the games in progress; default
            `parts.streams`.
    """

    def __init__(self, cfg: Config, run_dir: Path, parts: RunParts,
                 streams: EpisodeStreams | None = None) -> None:
        self.cfg, self.run_dir, self.parts = cfg, run_dir, parts
        self.log: RunLogger  # set by the runner once nothing can be refused any more
        t = cfg.train
        self.checkpointer = Checkpointer(cfg, run_dir, parts,
                                         parts.streams if streams is None else streams,
                                         note=lambda text: self.log.message(text))
        self.schedule = Schedule({"log": t.log_period, "eval": t.eval_period,
                                  "noise": t.noise_period, "checkpoint": t.checkpoint_period},
                                 no_catch_up=("log",))
        self.initialized = not parts.agent.data_dependent_init
        self.update_base = (t.learning_starts, 0)  # (env step, update count) the ratio counts from
        self.last_metrics: UpdateMetrics | None = None
        self.recent_returns: deque[float] = deque(maxlen=t.stop_window)
        self.failed: TrainingFailed | None = None  # set once: no checkpoint is written after
        self.owed_updates = 0  # updates the async catch-up had left when a signal cut it
        self.last_eval_step: int | None = None

    # ---- acting ---------------------------------------------------------------------------
    def act(self, step: int) -> tuple[Transition, list[Episode]]:
        """One actor step; an env failure becomes a one-line EnvError."""
        try:
            transition, episodes = self.parts.actor.step()
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise self.fail(EnvError(
                f"the env failed after env step {step}: {type(exc).__name__}: "
                f"{text[0][:200] if text else ''}; training stopped"
                f"{self.checkpointer.saved_note()}")) from exc
        self.checkpointer.streams.record(transition)
        for event in self.parts.actor.pop_events():  # a failed capture of its forward
            self.log.message(event)
        return transition, episodes

    def record_episodes(self, episodes: list[Episode], step: int) -> None:
        """Log finished episodes (raw score) and keep the window for `train.stop_return`."""
        for ep in episodes:
            self.log.episode(ep.ret, ep.length, step)
            self.recent_returns.append(ep.ret)

    def reached_stop_return(self) -> bool:
        return stop_return_reached(self.cfg, self.recent_returns)

    # ---- learning -------------------------------------------------------------------------
    def initialize(self) -> None:
        """The paper's data-dependent init on a replay batch, then targets and actor follow."""
        learner = self.parts.learner
        batch = self.parts.replay.sample(self.cfg.train.init_batch_size)
        x = torch.as_tensor(batch.obs, device=learner.device)
        data_dependent_init(learner.online, x)
        learner.sync_target()
        self.sync_weights()
        self.initialized = True
        self.log.message(f"data-dependent init on {len(x)} replay observations")

    def sync_weights(self) -> None:
        """Hand the actor the learner's folded weights, on the actor's device. Called where
        the learner does not update until the actor has taken them (the sync loop; the
        async loop's actor thread while the learner pauses; Ape-X's driver, whose pool
        copies them into Ray's object store), so they may be views of the learner's."""
        actor = self.parts.actor
        actor.set_weights(self.parts.learner.weights(actor.device, share=True))

    def beta(self, step: int) -> float:
        """Prioritized replay's importance-sampling exponent at `step`."""
        r = self.cfg.replay
        return priority_beta(step, self.cfg.train.schedule_horizon, r.priority_beta_start,
                             r.priority_beta_end)

    def updates_due(self, step: int) -> int:
        """The learner's update count the replay ratio calls for at `step` (the sync loop's
        rule: one more than the ratio's floor, so the first update comes at the start)."""
        base_step, base_updates = self.update_base
        return base_updates + int((step - base_step) * self.cfg.train.updates_per_step) + 1

    def learn(self, step: int) -> None:
        """Initialize if due, then the updates due at `step` (none before the start).

        With uniform replay the updates come in runs (`update_run`: every batch drawn
        first, which draws what one-at-a-time sampling draws, as nothing changes the
        replay in between; then `Learner.update_many`, on a GPU one graph replay per
        run); prioritized replay updates one at a time, each draw seeing the priorities
        the last update set. The actor's weights are refreshed once, after the last
        update in this call that completes a `actor.weight_sync_period`: the actor does
        not act in between, so earlier refreshes would be superseded."""
        if step < self.update_base[0]:
            return
        if not self.initialized:
            self.initialize()
        due, beta = self.updates_due(step), self.beta(step)
        learner, period = self.parts.learner, self.cfg.actor.weight_sync_period
        refresh = due - due % period
        while learner.num_updates < due:
            end = refresh if learner.num_updates < refresh else due
            one = self.cfg.replay.prioritized or learner.warming_up
            self.update_run(step, beta, 1 if one else min(end - learner.num_updates,
                                                          MAX_UPDATES_PER_RUN))
            if learner.num_updates == refresh:
                self.sync_weights()

    def update_once(self, step: int, beta: float) -> bool:
        """One learner update on a replay batch; True when the actor's weights are due."""
        self.update_run(step, beta, 1)
        return self.parts.learner.num_updates % self.cfg.actor.weight_sync_period == 0

    def update_run(self, step: int, beta: float, count: int) -> None:
        """`count` learner updates on replay batches drawn first (one: `Learner.update`;
        more: `Learner.update_many`); a non-finite loss or mean Q stops the run naming the
        first update that had it."""
        learner, cfg = self.parts.learner, self.cfg
        replay, bs = self.parts.replay, cfg.learner.batch_size
        # drawn in one call, which a DeviceReplay serves with one prefix sum
        batches = replay.sample_many(count, bs, beta=beta)
        warming_up = learner.warming_up
        verb = ("tun" if getattr(learner, "tuning", False)  # measures the auto modes
                else "compil" if learner.compiled else "captur")  # or a CUDA graph
        if warming_up:
            self.log.message(f"{verb}ing the learner update ({learner.mode}; once per "
                             "process)...")
        metrics = [learner.update(batches[0])] if count == 1 else learner.update_many(batches)
        if warming_up:
            self.log.message(f"learner update {verb}ed in {learner.compile_seconds:.1f} s")
            for event in learner.pop_events():  # a repaired compile cache, a fall back
                self.log.message(event)
        first = learner.num_updates - count
        for k, m in enumerate(metrics):
            if not (math.isfinite(m.loss) and math.isfinite(m.q_mean)):
                raise self.fail(NonFiniteError(
                    f"non-finite loss ({m.loss}) or mean Q ({m.q_mean}) at env step {step}, "
                    f"update {first + k + 1}: training stopped"
                    f"{self.checkpointer.saved_note()}"))
        if cfg.replay.prioritized:
            for batch, m in zip(batches, metrics):
                self.parts.replay.update_priorities(batch.index, m.td_abs)
        self.last_metrics = metrics[-1]

    def fail(self, exc: TrainingFailed) -> TrainingFailed:
        """Mark the run failed (no checkpoint after this) and return `exc` to raise."""
        if self.failed is None:
            self.failed = exc
        return exc

    # ---- periodic work --------------------------------------------------------------------
    def periodic(self, step: int) -> None:
        """The logging, evaluation, noise and checkpoint work due at `step`."""
        s = self.schedule
        if s.take("log", step):
            self.log.scalar("train/epsilon", self.parts.actor.epsilon, step)
            if self.last_metrics is not None:
                self.log.scalars("train", self.last_metrics.scalars(), step)
            self.log.progress(step, self.parts.learner.num_updates)
        if s.take("eval", step):
            self.evaluate(step)
        if self.initialized and s.take("noise", step):
            self.noise(step)
        # the last step's checkpoint is `finish`'s, after any end-of-run catch-up
        if s.take("checkpoint", step) and step < self.cfg.train.total_steps:
            self.save_checkpoint(step)

    def evaluate(self, step: int) -> None:
        from wnrl.evaluate import evaluate_network

        self.last_eval_step = step
        res = evaluate_network(self.parts.learner.online, self.cfg,
                               episodes=self.cfg.eval.episodes,
                               seed=self.cfg.seed + 10_000 + step)
        self.log.scalars("eval", {"return_mean": res.mean, "return_median": res.median,
                                  "return_iqm": res.iqm}, step)
        self.log.message(f"eval at step {step}: mean {res.mean:.1f} over {len(res.returns)} ep")

    def noise(self, step: int) -> None:
        from wnrl.noise import noise_metrics

        learner, bs = self.parts.learner, self.cfg.learner.batch_size
        probe = torch.as_tensor(self.parts.replay.sample(16).obs, device=learner.device)
        companions = torch.as_tensor(self.parts.replay.sample(8 * bs).obs,
                                     device=learner.device)
        self.log.scalars("noise", noise_metrics(learner.online, probe, companions, bs,
                                                target=learner.target,
                                                gamma=self.cfg.learner.gamma), step)

    # ---- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, step: int, cut: bool = True) -> Path:
        """Write the checkpoint of `step` (see `wnrl.training.checkpointer`; `cut`: a
        periodic one, not the closing one); a failed run raises its failure instead."""
        if self.failed is not None:
            raise self.failed
        progress = {"initialized": self.initialized, "update_base": self.update_base,
                    "recent_returns": list(self.recent_returns),
                    "owed_updates": self.owed_updates}
        try:
            return self.checkpointer.save(step, progress, cut)
        except TrainingFailed as exc:
            raise self.fail(exc) from None

    def restore(self, state: dict[str, Any], source: str) -> list[str]:
        """Load a checkpoint's state; returns notes for the log. Writes no file."""
        notes = self.checkpointer.restore(state, source)
        step = int(state["env_steps"])
        self.initialized = bool(state["initialized"])
        self.update_base = tuple(state["update_base"])
        self.recent_returns.extend(state.get("recent_returns", []))
        self.sync_weights()
        ratio = self.cfg.train.updates_per_step
        saved_ratio = state.get("config", {}).get("train", {}).get("updates_per_step", ratio)
        if saved_ratio != ratio and step > self.update_base[0]:
            # re-based so that the updates due at `step` are the ones done: none owed, none extra
            updates = self.parts.learner.num_updates
            self.update_base = (step, updates - 1)
            notes.append(f"train.updates_per_step changed from {saved_ratio} to {ratio}: the "
                         f"replay ratio counts from env step {step} ({updates} updates) on")
        if state.get("replay") is None:
            refill = step + self.cfg.train.learning_starts
            self.update_base = (refill, self.parts.learner.num_updates)
            notes.append(f"replay was not saved in the checkpoint: refilling it for "
                         f"{self.cfg.train.learning_starts} env steps before learning again "
                         f"(until step {refill})")
        self.schedule.restart_after(step)
        return notes

    # ---- the run --------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        """Train with the loop `train.mode` names until total_steps or a stop signal;
        returns the process exit code."""
        self.log_learner_mode()
        step = LOOPS[self.cfg.train.mode](self, stop)
        return self.finish(step, stop)

    def log_learner_mode(self) -> None:
        learner = self.parts.learner
        self.log.message(self.parts.replay_note)
        self.log.message(f"learner: {learner.mode} update on {learner.device}"
                         + (f"; {learner.compile_note}" if learner.compile_note else ""))

    def finish(self, step: int, stop: StopFlag) -> int:
        """Final checkpoint and report. A run whose work is all done is reported done (exit
        0) even if a signal came at the very end; anything left undone is resumable."""
        path = self.save_checkpoint(step, cut=False)
        finished = step >= self.cfg.train.total_steps or self.reached_stop_return()
        if self.reached_stop_return():
            self.log.message(f"mean return of the last {self.cfg.train.stop_window} episodes "
                             f"reached {self.cfg.train.stop_return}")
        resume = f"resume with: python scripts/train.py --resume {self.run_dir}"
        if stop.requested is not None and not (finished and self.owed_updates == 0):
            where = (f"during the end-of-run catch-up, {self.owed_updates} learner updates "
                     "owed" if finished else f"at env step {step}")
            self.log.message(f"stopped {where}; checkpoint {path}\n{resume}")
            return stop.exit_code
        if stop.requested is None and self.cfg.train.eval_period \
                and self.last_eval_step != step:  # not twice when the last period ends here
            self.evaluate(step)
        skipped = "" if stop.requested is None or not self.cfg.train.eval_period else \
            " (final evaluation skipped: stop signal)"
        self.log.message(f"done: {step} env steps, {self.parts.learner.num_updates} updates; "
                         f"checkpoint {path}{skipped}")
        return 0
