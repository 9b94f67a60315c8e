"""Checkpoints of a training run: the payload, the compatibility check, the games.

A checkpoint holds everything to continue: networks, optimizer, counters, RNG
states, the config and, if `replay.save_in_checkpoint`, the replay. It is
written atomically (`wnrl.checkpoint`), only while the weights are finite, and
the oldest are pruned to `train.keep_checkpoints`.

What a checkpoint does with the games in progress, which an env cannot save,
is the run's `EpisodeStreams` (`wnrl.training.streams`): by default a resume
starts new games; with `train.exact_resume` it is bit-identical, from a periodic
checkpoint or from the closing one (the end of the run, a stop signal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from wnrl import checkpoint as ckpt
from wnrl.config import Config, to_dict
from wnrl.core.interfaces import Saveable
from wnrl.errors import NonFiniteError, one_line
from wnrl.learner import Learner
from wnrl.recipe import AgentRecipe
from wnrl.replay import Batch
from wnrl.training.streams import EpisodeStreams, LocalStreams, reset_seed

__all__ = ["Checkpointer", "EpisodeStreams", "LocalStreams", "RunParts", "check_replay_settings",
           "network_signature", "nonfinite_tensors", "reset_seed"]  # streams' names: moved


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold a NaN or inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()]


class EnvShape(Protocol):
    """What a run needs of its env's shape: a VecEnv, or Ape-X's EnvSpec."""

    @property
    def obs_shape(self) -> tuple[int, ...]: ...

    @property
    def num_actions(self) -> int: ...


class SamplerSide(Saveable, Protocol):
    """What the trainer uses of a replay: a ReplayBuffer, or Ape-X's ShardedReplay."""

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch: ...

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4) -> list[Batch]: ...

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None: ...


class ActorSide(Saveable, Protocol):
    """What the trainer uses of an actor: an Actor, or Ape-X's ActorPool."""

    @property
    def device(self) -> torch.device: ...

    @property
    def epsilon(self) -> float: ...

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None: ...


class RunParts(Protocol):
    """What a Trainer runs: `wnrl.training.parts.Parts` or `wnrl.distributed.apex.ApexParts`
    (read-only here, so either's concrete types fit)."""

    @property
    def agent(self) -> AgentRecipe: ...

    @property
    def env(self) -> EnvShape: ...

    @property
    def replay(self) -> SamplerSide: ...

    @property
    def learner(self) -> Learner: ...

    @property
    def actor(self) -> ActorSide: ...

    @property
    def streams(self) -> EpisodeStreams: ...

    @property
    def replay_note(self) -> str: ...


def network_signature(cfg: Config, parts: RunParts) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this config."""
    return {"agent": cfg.agent, "norm": parts.agent.norm, "env": cfg.env.id,
            "obs_shape": list(parts.env.obs_shape), "num_actions": parts.env.num_actions,
            "dueling": cfg.network.dueling, "hidden_sizes": list(cfg.network.hidden_sizes)}


def check_compatible(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Refuse (CheckpointError) a checkpoint whose signature differs from the config's."""
    for key, want in current.items():
        have = saved.get(key)
        if have is not None and have != want:
            raise ckpt.CheckpointError(
                f"checkpoint {source} is incompatible: it has {key}={have!r}, "
                f"this config has {key}={want!r}")


# The settings a saved replay was built with: a resume must keep them to load it.
REPLAY_KEYS = ("env.num_envs", "replay.capacity", "env.frame_stack", "replay.n_step",
               "learner.gamma", "replay.prioritized", "distributed.enabled",
               "distributed.num_actors", "distributed.num_replay_shards")


def check_replay_settings(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Refuse (CheckpointError naming the key) a config that cannot load the replay saved
    in checkpoint `source` (`saved`, `current`: `to_dict` of the two configs). The Ape-X
    layout counts only where Ape-X runs."""
    apex = current["distributed"]["enabled"] or saved.get("distributed", {}).get("enabled")
    for key in REPLAY_KEYS:
        section, name = key.split(".")
        if section == "distributed" and name != "enabled" and not apex:
            continue
        have, want = saved.get(section, {}).get(name), current[section][name]
        if have is not None and have != want:
            raise ckpt.CheckpointError(
                f"the replay saved in checkpoint {source} was made with {key}={have}; this "
                f"config has {key}={want}: resume with {key}={have} to load it")


class Checkpointer:
    """Writes and reads the checkpoints of one run directory (see the module doc)."""

    def __init__(self, cfg: Config, run_dir: Path, parts: RunParts,
                 streams: EpisodeStreams, note: Callable[[str], None] = print) -> None:
        self.cfg, self.run_dir, self.parts, self.streams = cfg, run_dir, parts, streams
        self.note = note  # one-line messages for the run's log
        # (env step, learner updates, path) of the latest checkpoint written
        self.last: tuple[int, int, Path] | None = None
        self.readable: dict[Path, bool] = {}  # what is known of the files (see `prune`)

    def saved_note(self) -> str:
        """'; ...' saying what is saved, for an error that stops the run."""
        latest = ckpt.latest_checkpoint(self.run_dir)
        return (f"; nothing more is saved (latest checkpoint: {latest})" if latest
                else "; no checkpoint was written")

    def save(self, step: int, progress: dict[str, Any], cut: bool = True) -> Path:
        """Write the checkpoint of env step `step` with the trainer's `progress`
        (`initialized`, `update_base`, `recent_returns`: the `train.stop_return` window,
        `owed_updates`: what a signal left of the end-of-run catch-up); NonFiniteError if
        the weights are not finite. `cut`: a periodic checkpoint (`train.exact_resume`
        cuts the games there), not the closing one. A second call at the same step and
        update count returns the first one's path."""
        learner = self.parts.learner
        if self.last is not None and self.last[:2] == (step, learner.num_updates):
            return self.last[2]  # nothing changed since (async: updates go on at one step)
        learner_state = learner.state_dict()
        bad = nonfinite_tensors(learner_state["online"]) + nonfinite_tensors(
            learner_state["target"])
        if bad:
            raise NonFiniteError(
                f"non-finite weights ({', '.join(bad[:3])}) at env step {step}, update "
                f"{learner.num_updates}: training stopped{self.saved_note()}")
        games = self.streams.at_save(step, cut)
        save_replay = self.cfg.replay.save_in_checkpoint
        payload = {
            "signature": network_signature(self.cfg, self.parts),
            "config": to_dict(self.cfg),
            "env_steps": step,
            "initialized": progress["initialized"],
            "update_base": list(progress["update_base"]),
            "recent_returns": [float(r) for r in progress["recent_returns"]],
            "owed_updates": int(progress["owed_updates"]),
            "learner": learner_state,
            "actor": self.parts.actor.state_dict(),
            "replay": self.parts.replay.state_dict() if save_replay else None,
            "open_obs": games.get("open_obs"),
            "open_games": games.get("open_games"),
            "torch_rng": torch.get_rng_state(),
            "saved_at": time.time(),
        }
        d = self.run_dir / "checkpoints"
        path = d / ckpt.checkpoint_name(step)
        ckpt.save(path, payload)
        self.last = (step, learner.num_updates, path)
        self.readable[path] = True
        for aside in ckpt.prune(d, keep=self.cfg.train.keep_checkpoints, readable=self._readable):
            self.note(f"set aside unreadable checkpoint {aside} (it is not counted among the "
                      f"train.keep_checkpoints={self.cfg.train.keep_checkpoints} kept)")
        return path

    def _readable(self, path: Path) -> bool:
        """Whether checkpoint file `path` loads: read once per file, then remembered."""
        if path not in self.readable:
            self.readable[path] = ckpt.unreadable_reason(path) is None
        return self.readable[path]

    def restore(self, state: dict[str, Any], source: str) -> list[str]:
        """Load a checkpoint's learner, actor, replay and RNG state into the parts (the
        trainer reads its own progress from `state`); returns notes for the log."""
        p = self.parts
        check_compatible(state.get("signature", {}), network_signature(self.cfg, p), source)
        bad = nonfinite_tensors(state.get("learner", {}).get("online", {}))
        if bad:
            raise ckpt.CheckpointError(f"checkpoint {source} holds non-finite weights "
                                       f"({', '.join(bad[:3])}): resume from an earlier one")
        try:
            p.learner.load_state_dict(state["learner"])
            p.actor.load_state_dict(state["actor"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ckpt.CheckpointError(f"checkpoint {source} does not fit this agent: "
                                       f"{one_line(exc)}") from None
        step = int(state["env_steps"])
        torch.set_rng_state(state["torch_rng"])
        notes: list[str] = []
        if state.get("replay") is not None:
            check_replay_settings(state.get("config", {}), to_dict(self.cfg), source)
        saved_games: dict[str, Any] = {}
        if state.get("replay") is not None:
            p.replay.load_state_dict(state["replay"])
            saved_games = {k: state.get(k) for k in ("open_obs", "open_games")}
        if not self.cfg.train.exact_resume and saved_games.get("open_games") is None:
            notes.append(f"resumed at env step {step}: the emulator state cannot be saved, so "
                         f"new games start here (the games in progress at the checkpoint "
                         f"are not logged)")
        return notes + self.streams.at_restore(step, saved_games)
