"""The group's training loop: K members in lock step, each a normal run.

Every member has a solo `wnrl.training.trainer.Trainer` over its own parts (its run
directory, logger, schedule, checkpointer, evaluation and noise diagnostics); the group
does only what it shares:

    group_actor.prepare()              one forward over every member's observations
    trainer_k.act(step); replay_k.add  each member's vector step (its own envs)
    trainer_k.record_episodes          its games, to its own TensorBoard events
    learn(step)                        data-dependent init per member on its own batch,
                                       then the updates due: one GroupLearner.update
                                       on one batch per member from its own replay
    trainer_k.periodic(step)           its log, evaluation, noise, checkpoint

This is `wnrl.training.loops.sync_loop` and `Trainer.learn` for K members, in the same
order, so member k's numbers are those of a solo run with its seed and rate. A stop
signal ends the loop after the current step and every member's `finish` checkpoints it.
A member that fails (non-finite loss or weights, an env error) stops the group: the
others are checkpointed, and the process exits 1 naming the member.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from wnrl.config import Config
from wnrl.errors import NonFiniteError, TrainingFailed
from wnrl.group.parts import GroupParts
from wnrl.signals import StopFlag
from wnrl.training.trainer import Trainer


class GroupTrainer:
    """Trains the members of `group` (see the module doc); `trainers[k].log` is set by the
    runner, as for a solo trainer."""

    def __init__(self, cfgs: list[Config], run_dirs: list[Path], group: GroupParts) -> None:
        self.cfgs, self.run_dirs, self.group = cfgs, run_dirs, group
        self.trainers = [Trainer(c, d, p) for c, d, p in zip(cfgs, run_dirs, group.members)]
        self.learner, self.actor = group.learner, group.actor

    @contextmanager
    def member(self, k: int) -> Iterator[Trainer]:
        """Member k's trainer with its torch generator in place."""
        with self.group.rngs[k]:
            yield self.trainers[k]

    # ---- the loop -------------------------------------------------------------------------
    def step_all(self, step: int) -> int:
        """One vector step of every member; returns the env step reached."""
        self.actor.prepare()
        done = []
        for t in self.trainers:
            transition, episodes = t.act(step)
            t.parts.replay.add(transition)
            done.append(episodes)
        step = self.trainers[0].parts.actor.env_steps
        for t, episodes in zip(self.trainers, done):
            t.record_episodes(episodes, step)
        return step

    def initialize(self) -> None:
        """Each member's data-dependent init on a batch of its own replay."""
        for k in range(self.learner.k):
            with self.member(k) as t:
                batch = t.parts.replay.sample(t.cfg.train.init_batch_size)
                x = torch.as_tensor(batch.obs, device=self.learner.device)
                self.learner.data_dependent_init(k, x)
                t.initialized = True
                t.log.message(f"data-dependent init on {len(x)} replay observations")
        self.sync_weights()

    def sync_weights(self) -> None:
        self.actor.set_weights(self.learner.folded(self.actor.device))

    def learn(self, step: int) -> None:
        """Initialize if due, then the updates due at `step` (as `Trainer.learn`)."""
        lead = self.trainers[0]
        if step < lead.update_base[0]:
            return
        if not lead.initialized:
            self.initialize()
        due, beta = lead.updates_due(step), lead.beta(step)
        period = lead.cfg.actor.weight_sync_period
        while self.learner.num_updates < due:
            if self.update_once(step, beta) and self.learner.num_updates + period > due:
                self.sync_weights()

    def update_once(self, step: int, beta: float) -> bool:
        """One update of every member on a batch of its own replay; True when the actor's
        weights are due."""
        bs = self.cfgs[0].learner.batch_size
        batches = [t.parts.replay.sample(bs, beta=beta) for t in self.trainers]
        metrics = self.learner.update(batches)
        for t, batch, m in zip(self.trainers, batches, metrics):
            if not (math.isfinite(m.loss) and math.isfinite(m.q_mean)):
                raise t.fail(NonFiniteError(
                    f"{t.run_dir.name}: non-finite loss ({m.loss}) or mean Q ({m.q_mean}) at "
                    f"env step {step}, update {self.learner.num_updates}: training stopped"
                    f"{t.checkpointer.saved_note()}"))
            if t.cfg.replay.prioritized:
                t.parts.replay.update_priorities(batch.index, m.td_abs)
            t.last_metrics = m
        return self.learner.num_updates % self.cfgs[0].actor.weight_sync_period == 0

    def advance(self, step: int) -> int:
        """One iteration of the loop: every member's vector step, the updates due, every
        member's periodic work; returns the env step reached."""
        step = self.step_all(step)
        self.learn(step)
        for k in range(self.learner.k):
            with self.member(k) as t:
                t.periodic(step)
        return step

    def loop(self, stop: StopFlag) -> int:
        total, step = self.cfgs[0].train.total_steps, self.trainers[0].parts.actor.env_steps
        while step < total and stop.requested is None:
            step = self.advance(step)
        return step

    # ---- the run --------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        """Train every member to total_steps or a stop signal; the worst member's exit code."""
        lead = self.trainers[0]
        ignored = [f"{key}={getattr(lead.cfg.learner, key)}" for key in
                   ("compile", "precision")
                   if getattr(lead.cfg.learner, key) in ("true", "bf16")]
        for t in self.trainers:
            t.log_learner_mode()
            t.log.message(f"group of {self.learner.k} runs trained together: "
                          + ", ".join(d.name for d in self.run_dirs)
                          + (f" (the group learner runs eager fp32: {', '.join(ignored)} "
                             "not applied)" if ignored else ""))
        try:
            step = self.loop(stop)
        except TrainingFailed:
            self.save_survivors()
            raise
        codes = []
        for k in range(self.learner.k):
            with self.member(k) as t:
                codes.append(t.finish(step, stop))
        return max(codes)

    def save_survivors(self) -> None:
        """After a member failed: checkpoint every other member at the last full step."""
        for k, t in enumerate(self.trainers):
            if t.failed is None:
                with self.member(k):
                    path = t.save_checkpoint(t.parts.actor.env_steps)
                t.log.message(f"stopped: another member of the group failed; checkpoint "
                              f"{path}\nresume with: python scripts/train.py --resume "
                              f"{t.run_dir}")
