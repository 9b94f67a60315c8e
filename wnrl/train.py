"""The training loop: wires env, actor, replay and learner (docs/ARCHITECTURE.md).

`build(cfg)` makes the parts; `Trainer` runs the synchronous loop: one vector
env step (N env steps) by the actor, its rows into the replay, then as many
learner updates as the replay ratio `train.updates_per_step` calls for, the
actor's folded weights refreshed every `actor.weight_sync_period` updates.
For a seed on CPU the run is deterministic (same seed, same losses).

Checkpoints (every `train.checkpoint_period` env steps, at the end, and on
SIGINT/SIGTERM) hold everything to continue: networks, optimizer, counters,
RNG states, the config and, if `replay.save_in_checkpoint`, the replay. The
env's emulator state cannot be saved, so a resumed run starts new games: the
games in progress at the checkpoint end there, by truncation, for the replay
(their last transitions bootstrap) and are not logged. Checkpoints leave the
running games alone, so the training curve sees every game whole. With
`train.exact_resume` every checkpoint instead cuts the games in progress and
resets the envs from a seed derived from the step, in the uninterrupted run
too, which makes a resumed run bit-identical to it.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wnrl import checkpoint as ckpt
from wnrl.actor import Actor, closing_rows
from wnrl.agents import get_agent
from wnrl.async_train import async_loop
from wnrl.config import Config, ConfigError, to_dict
from wnrl.core.types import Episode, Transition
from wnrl.envs import VecEnv, make_env
from wnrl.errors import EnvError, NonFiniteError, TrainingFailed, one_line
from wnrl.learner import Learner, UpdateMetrics
from wnrl.logger import RunLogger
from wnrl.losses import make_loss
from wnrl.networks import make_q_network
from wnrl.nn import data_dependent_init
from wnrl.recipe import AgentRecipe
from wnrl.replay import ReplayBuffer
from wnrl.schedules import priority_beta
from wnrl.seeds import EVAL_SEED_BASE
from wnrl.signals import StopFlag


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold a NaN or inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()]


@dataclass
class Parts:
    agent: AgentRecipe
    env: VecEnv
    replay: ReplayBuffer
    learner: Learner
    actor: Actor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(cfg: Config) -> Parts:
    """Make the env, Q-network, replay, learner and actor a config describes."""
    seed_everything(cfg.seed)
    agent = get_agent(cfg.agent)
    env = make_env(cfg.env, seed=cfg.seed, training=True)
    net = make_q_network(env.obs_shape, env.num_actions, norm=agent.norm,
                         dueling=cfg.network.dueling, hidden_sizes=cfg.network.hidden_sizes,
                         channels_last=cfg.network.channels_last)
    replay = ReplayBuffer.from_config(cfg.replay, env.obs_shape, env.obs_dtype, env.num_envs,
                                      gamma=cfg.learner.gamma, seed=cfg.seed)
    learner = Learner(net, cfg.learner, make_loss(cfg.learner), device=cfg.learner.device)
    actor = Actor(env, net, cfg.actor, total_steps=cfg.train.total_steps,
                  clip_rewards=cfg.env.clip_rewards,
                  terminal_on_life_loss=cfg.env.terminal_on_life_loss, seed=cfg.seed,
                  batch_stats=cfg.network.actor_batch_stats,
                  device=learner.device if cfg.actor.device == "auto" else cfg.actor.device)
    actor.set_weights(learner.weights(actor.device))
    return Parts(agent, env, replay, learner, actor)


def network_signature(cfg: Config, parts: Parts) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this config."""
    return {"agent": cfg.agent, "norm": parts.agent.norm, "env": cfg.env.id,
            "obs_shape": list(parts.env.obs_shape), "num_actions": parts.env.num_actions,
            "dueling": cfg.network.dueling, "hidden_sizes": list(cfg.network.hidden_sizes)}


def check_compatible(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    for key, want in current.items():
        have = saved.get(key)
        if have is not None and have != want:
            raise ckpt.CheckpointError(
                f"checkpoint {source} is incompatible: it has {key}={have!r}, "
                f"this config has {key}={want!r}")


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, parts: Parts) -> None:
        self.cfg, self.run_dir, self.p = cfg, run_dir, parts
        self.log: RunLogger  # set by the runner once nothing can be refused any more
        t = cfg.train
        self.initialized = not parts.agent.data_dependent_init
        self.update_base = (t.learning_starts, 0)  # (env step, update count) the ratio counts from
        self.next_log = t.log_period
        self.next_ckpt = t.checkpoint_period
        self.next_eval = t.eval_period or math.inf
        self.next_noise = t.noise_period or math.inf
        self.last_metrics: UpdateMetrics | None = None
        self.recent_returns: deque[float] = deque(maxlen=t.stop_window)
        self.last_checkpoint: tuple[int, Path] | None = None
        self.failed: TrainingFailed | None = None  # set once: no checkpoint is written after
        self.owed_updates = 0  # updates the async catch-up had left when a signal cut it

    def record_episodes(self, episodes: list, step: int) -> None:
        """Log finished episodes (raw score) and keep the window for `train.stop_return`."""
        for ep in episodes:
            self.log.episode(ep.ret, ep.length, step)
            self.recent_returns.append(ep.ret)

    def reached_stop_return(self) -> bool:
        target, window = self.cfg.train.stop_return, self.recent_returns
        return target is not None and len(window) == window.maxlen and np.mean(window) >= target

    # ---- learning -------------------------------------------------------------------------
    def _initialize(self) -> None:
        """The paper's data-dependent init on a replay batch, then targets and actor follow."""
        batch = self.p.replay.sample(self.cfg.train.init_batch_size)
        x = torch.as_tensor(batch.obs, device=self.p.learner.device)
        data_dependent_init(self.p.learner.online, x)
        self.p.learner.sync_target()
        self.p.actor.set_weights(self.p.learner.weights(self.p.actor.device))
        self.initialized = True
        self.log.message(f"data-dependent init on {len(x)} replay observations")

    def beta(self, step: int) -> float:
        """Prioritized replay's importance-sampling exponent at `step`."""
        r = self.cfg.replay
        return priority_beta(step, self.cfg.train.total_steps, r.priority_beta_start,
                             r.priority_beta_end)

    def _learn(self, step: int) -> None:
        base_step, base_updates = self.update_base
        if step < base_step:
            return
        if not self.initialized:
            self._initialize()
        lr, cfg = self.p.learner, self.cfg
        due = base_updates + int((step - base_step) * cfg.train.updates_per_step) + 1
        beta = self.beta(step)
        while lr.num_updates < due:
            if self._update_once(step, beta):
                self.p.actor.set_weights(lr.weights(self.p.actor.device))

    def _update_once(self, step: int, beta: float) -> bool:
        """One learner update on a replay batch; True when the actor's weights are due."""
        lr, cfg = self.p.learner, self.cfg
        batch = self.p.replay.sample(cfg.learner.batch_size, beta=beta)
        warming_up = lr.warming_up
        if warming_up:
            self.log.message(f"compiling the learner update ({lr.mode}; once per process)...")
        m = lr.update(batch)
        if warming_up:
            self.log.message(f"learner update compiled in {lr.compile_seconds:.1f} s")
        if not (math.isfinite(m.loss) and math.isfinite(m.q_mean)):
            raise self.fail(NonFiniteError(
                f"non-finite loss ({m.loss}) or mean Q ({m.q_mean}) at env step {step}, "
                f"update {lr.num_updates}: training stopped{self._saved_note()}"))
        if cfg.replay.prioritized:
            self.p.replay.update_priorities(batch.index, m.td_abs)
        self.last_metrics = m
        return lr.num_updates % cfg.actor.weight_sync_period == 0

    def fail(self, exc: TrainingFailed) -> TrainingFailed:
        """Mark the run failed (no checkpoint after this) and return `exc` to raise."""
        if self.failed is None:
            self.failed = exc
        return exc

    def _saved_note(self) -> str:
        latest = ckpt.latest_checkpoint(self.run_dir)
        return (f"; nothing more is saved (latest checkpoint: {latest})" if latest
                else "; no checkpoint was written")

    def act(self, step: int) -> tuple[Transition, list[Episode]]:
        """One actor step; an env failure becomes a one-line EnvError."""
        try:
            return self.p.actor.step()
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise self.fail(EnvError(
                f"the env failed after env step {step}: {type(exc).__name__}: "
                f"{text[0][:200] if text else ''}; training stopped{self._saved_note()}")) \
                from exc

    # ---- periodic work --------------------------------------------------------------------
    def _periodic(self, step: int) -> None:
        if step >= self.next_log:
            self.next_log += self.cfg.train.log_period * max(1, (step - self.next_log)
                                                             // self.cfg.train.log_period + 1)
            self.log.scalar("train/epsilon", self.p.actor.epsilon, step)
            if self.last_metrics is not None:
                self.log.scalars("train", self.last_metrics.scalars(), step)
            self.log.progress(step, self.p.learner.num_updates)
        if step >= self.next_eval:
            self.next_eval += self.cfg.train.eval_period
            self.evaluate(step)
        if step >= self.next_noise and self.initialized:
            self.next_noise += self.cfg.train.noise_period
            self.noise(step)
        if step >= self.next_ckpt:
            self.next_ckpt += self.cfg.train.checkpoint_period
            self.save_checkpoint(step)

    def evaluate(self, step: int) -> None:
        from wnrl.evaluate import evaluate_network

        res = evaluate_network(self.p.learner.online, self.cfg, episodes=self.cfg.eval.episodes,
                               seed=self.cfg.seed + 10_000 + step)
        self.log.scalars("eval", {"return_mean": res.mean, "return_median": res.median,
                                  "return_iqm": res.iqm}, step)
        self.log.message(f"eval at step {step}: mean {res.mean:.1f} over {len(res.returns)} ep")

    def noise(self, step: int) -> None:
        from wnrl.noise import noise_metrics

        bs, dev, lr = self.cfg.learner.batch_size, self.p.learner.device, self.p.learner
        probe = torch.as_tensor(self.p.replay.sample(16).obs, device=dev)
        companions = torch.as_tensor(self.p.replay.sample(8 * bs).obs, device=dev)
        self.log.scalars("noise", noise_metrics(lr.online, probe, companions, bs, target=lr.target,
                                                gamma=self.cfg.learner.gamma), step)

    # ---- checkpoints ----------------------------------------------------------------------
    def reset_seed(self, step: int) -> int:
        return (self.cfg.seed * 1_000_003 + step) % EVAL_SEED_BASE  # below evaluation's

    def open_streams(self) -> np.ndarray | None:
        """The observation each replay stream's open episode would continue from
        (uint8[N, C, H, W] | float32[N, D]), saved with the replay so that a resumed run
        can end those episodes by truncation before it starts new games."""
        return self.p.actor.obs

    def save_checkpoint(self, step: int) -> Path:
        """Write the checkpoint atomically, after checking the weights are finite (with
        `train.exact_resume`, first cut the games in progress and reset the envs; see module
        doc). A failed run never writes another checkpoint."""
        if self.failed is not None:
            raise self.failed  # a failed run never writes another checkpoint
        if self.last_checkpoint is not None and self.last_checkpoint[0] == step:
            return self.last_checkpoint[1]  # already saved at this step
        learner_state = self.p.learner.state_dict()
        bad = nonfinite_tensors(learner_state["online"]) + nonfinite_tensors(
            learner_state["target"])
        if bad:
            raise self.fail(NonFiniteError(
                f"non-finite weights ({', '.join(bad[:3])}) at env step {step}, update "
                f"{self.p.learner.num_updates}: training stopped{self._saved_note()}"))
        save_replay = self.cfg.replay.save_in_checkpoint
        open_obs = None
        if self.cfg.train.exact_resume:
            self.p.replay.add(self.p.actor.cut_episodes(self.reset_seed(step)))
        elif save_replay:
            open_obs = self.open_streams()
        payload = {
            "signature": network_signature(self.cfg, self.p),
            "config": to_dict(self.cfg),
            "env_steps": step,
            "initialized": self.initialized,
            "update_base": list(self.update_base),
            "learner": learner_state,
            "actor": self.p.actor.state_dict(),
            "replay": self.p.replay.state_dict() if save_replay else None,
            "open_obs": open_obs,
            "torch_rng": torch.get_rng_state(),
            "saved_at": time.time(),
        }
        d = self.run_dir / "checkpoints"
        path = d / ckpt.checkpoint_name(step)
        ckpt.save(path, payload)
        self.last_checkpoint = (step, path)
        ckpt.prune(d, keep=self.cfg.train.keep_checkpoints)
        return path

    def restore(self, state: dict[str, Any], source: str) -> list[str]:
        """Load a checkpoint's state; returns notes for the log. Writes no file."""
        check_compatible(state.get("signature", {}), network_signature(self.cfg, self.p), source)
        bad = nonfinite_tensors(state.get("learner", {}).get("online", {}))
        if bad:
            raise ckpt.CheckpointError(f"checkpoint {source} holds non-finite weights "
                                       f"({', '.join(bad[:3])}): resume from an earlier one")
        try:
            self.p.learner.load_state_dict(state["learner"])
            self.p.actor.load_state_dict(state["actor"])
        except (RuntimeError, KeyError, ValueError) as exc:
            msg = one_line(exc)
            raise ckpt.CheckpointError(f"checkpoint {source} does not fit this agent: {msg}") \
                from None
        notes: list[str] = []
        step = int(state["env_steps"])
        self.initialized = bool(state["initialized"])
        self.update_base = tuple(state["update_base"])
        torch.set_rng_state(state["torch_rng"])
        self.p.actor.reset_envs(self.reset_seed(step))
        self.p.actor.set_weights(self.p.learner.weights(self.p.actor.device))
        if not self.cfg.train.exact_resume:
            notes.append(f"resumed at env step {step}: the emulator state cannot be saved, so "
                         f"new games start here (the games in progress at the checkpoint "
                         f"are not logged)")
        if state.get("replay") is not None:
            self.p.replay.load_state_dict(state["replay"])
            if state.get("open_obs") is not None:
                self.p.replay.add(closing_rows(np.asarray(state["open_obs"])))
        else:
            refill = step + self.cfg.train.learning_starts
            self.update_base = (refill, self.p.learner.num_updates)
            notes.append(f"replay was not saved in the checkpoint: refilling it for "
                         f"{self.cfg.train.learning_starts} env steps before learning again "
                         f"(until step {refill})")
        t = self.cfg.train
        self.next_log = (step // t.log_period + 1) * t.log_period
        self.next_ckpt = (step // t.checkpoint_period + 1) * t.checkpoint_period
        if t.eval_period:
            self.next_eval = (step // t.eval_period + 1) * t.eval_period
        if t.noise_period:
            self.next_noise = (step // t.noise_period + 1) * t.noise_period
        return notes

    # ---- the loop -------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        """Train until total_steps or a stop signal; returns the process exit code."""
        self.log_learner_mode()
        step = LOOPS[self.cfg.train.mode](self, stop)
        return self._finish(step, stop)

    def log_learner_mode(self) -> None:
        lr = self.p.learner
        self.log.message(f"learner: {lr.mode} update on {lr.device}"
                         + (f"; {lr.compile_note}" if lr.compile_note else ""))

    def sync_loop(self, stop: StopFlag) -> int:
        """Alternate one actor step and the updates it makes due; returns the env step."""
        actor, replay, total = self.p.actor, self.p.replay, self.cfg.train.total_steps
        step = actor.env_steps
        while step < total and stop.requested is None and not self.reached_stop_return():
            transition, episodes = self.act(step)
            replay.add(transition)
            step = actor.env_steps
            self.record_episodes(episodes, step)
            self._learn(step)
            self._periodic(step)
        return step

    def _finish(self, step: int, stop: StopFlag) -> int:
        """Final checkpoint and report. A run whose work is all done is reported done (exit
        0) even if a signal came at the very end; anything left undone is resumable."""
        path = self.save_checkpoint(step)
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
        if stop.requested is None and self.cfg.train.eval_period:
            self.evaluate(step)
        skipped = "" if stop.requested is None or not self.cfg.train.eval_period else \
            " (final evaluation skipped: stop signal)"
        self.log.message(f"done: {step} env steps, {self.p.learner.num_updates} updates; "
                         f"checkpoint {path}{skipped}")
        return 0


LOOPS: dict[str, Callable[[Trainer, StopFlag], int]] = {
    "sync": Trainer.sync_loop, "async": async_loop}  # train.mode -> loop


def validate_against_machine(cfg: Config) -> None:
    import os

    cores = os.cpu_count() or 1
    limit = max(64, 32 * cores)
    if cfg.env.num_envs > limit:
        raise ConfigError(f"env.num_envs={cfg.env.num_envs} is more envs than this machine can "
                          f"run ({cores} cores): must be <= {limit}")
