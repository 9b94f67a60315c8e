"""What a checkpoint does with the games in progress (`EpisodeStreams`).

An env's emulator state cannot be saved. By default checkpoints leave the
running games alone (the training curve sees every game whole); the replay is
saved with the observation each env's open game would continue from, and a
resumed run closes those streams by truncation (their last transitions
bootstrap) before its envs start new games.

With `train.exact_resume` a resume is bit-identical to the uninterrupted run:

- the periodic checkpoints (every `train.checkpoint_period`) cut the games in
  progress and reset the envs from a seed derived from the step, in the
  uninterrupted run too, and a resume from one resets the same way;
- the closing checkpoint (the end of the run, or a stop signal at any step) does
  not cut: it saves the seed of the envs' last reset and every vector step's
  actions since (int64[T, N], at most `checkpoint_period / N` steps), and a
  resume plays them again (`Actor.replay_games`: the envs are deterministic for
  a seed and the actions), so the games go on where they were. If the replayed
  games do not reach the saved observation, the resume starts new games and
  says so.

Ape-X's workers keep playing through a checkpoint and close their own streams
when they restart (`wnrl.distributed.apex.WorkerStreams`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from wnrl.actor import Actor, closing_rows
from wnrl.config import Config
from wnrl.core.types import Transition
from wnrl.replay import ReplayBuffer
from wnrl.replay.device import DeviceReplay
from wnrl.seeds import EVAL_SEED_BASE


def reset_seed(cfg: Config, step: int) -> int:
    """The envs' reset seed at a checkpoint cut or a resume (below evaluation's seeds)."""
    return (cfg.seed * 1_000_003 + step) % EVAL_SEED_BASE


class EpisodeStreams(Protocol):
    """What a checkpoint does with the games in progress (see the module doc)."""

    def record(self, transition: Transition) -> None:
        """Each actor step's rows, as the actor made them."""
        ...

    def at_save(self, step: int, cut: bool) -> dict[str, Any]:
        """Before saving at `step`: the checkpoint's entries on the open games (`open_obs`,
        `open_games`; absent = None). `cut`: a periodic checkpoint, not the closing one."""
        ...

    def at_restore(self, step: int, saved: dict[str, Any]) -> list[str]:
        """After the replay is loaded (`saved`: the checkpoint's entries; empty when no
        replay was saved): go on with the saved games or end them and start new ones.
        Returns notes for the log."""
        ...


class LocalStreams:
    """The games of a single-machine actor whose rows go to a local replay."""

    def __init__(self, cfg: Config, actor: Actor, replay: ReplayBuffer | DeviceReplay) -> None:
        self.cfg, self.actor, self.replay = cfg, actor, replay
        self.cut_at: int | None = None  # env step of the last cut (once per step)
        self.games_seed = actor.seed + actor.env_steps  # the envs' last reset (the actor's own)
        self.actions: list[np.ndarray] = []  # exact_resume: int64[N] per vector step since

    def record(self, transition: Transition) -> None:
        if self.cfg.train.exact_resume:
            self.actions.append(np.array(transition.action, dtype=np.int64))

    def _new_games(self, seed: int) -> None:
        self.actor.reset_envs(seed)
        self.games_seed, self.actions = seed, []

    def at_save(self, step: int, cut: bool) -> dict[str, Any]:
        if not self.cfg.train.exact_resume:
            return {"open_obs": self.actor.obs if self.cfg.replay.save_in_checkpoint else None}
        if cut:
            if self.cut_at != step:  # a second save at one step (async catch-up) cuts nothing
                self.replay.add(closing_rows(self.actor.obs))
                self._new_games(reset_seed(self.cfg, step))
                self.cut_at = step
            return {}
        n = self.actor.num_envs
        actions = np.stack(self.actions) if self.actions else np.zeros((0, n), np.int64)
        return {"open_obs": self.actor.obs,
                "open_games": {"seed": self.games_seed, "actions": actions}}

    def at_restore(self, step: int, saved: dict[str, Any]) -> list[str]:
        open_obs, games = saved.get("open_obs"), saved.get("open_games")
        notes = []
        if open_obs is not None and games is not None:
            seed, actions = int(games["seed"]), np.asarray(games["actions"], np.int64)
            if np.array_equal(self.actor.replay_games(seed, actions), open_obs):
                self.games_seed, self.actions = seed, list(actions)
                return [f"the games in progress at env step {step} go on where they were "
                        f"(their last {len(actions)} vector steps played again)"]
            notes.append(f"the games in progress at env step {step} could not be played again "
                         "(the env did not reach the saved observation): new games start "
                         "here, so this resume is not bit-identical")
        if open_obs is not None:
            self.replay.add(closing_rows(np.asarray(open_obs)))
        self._new_games(reset_seed(self.cfg, step))
        return notes
