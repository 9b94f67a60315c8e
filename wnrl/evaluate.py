"""Evaluation protocol and scores (Machado et al. 2018).

Whole games (no life-loss terminals), raw unclipped score, epsilon 0.001,
episodes capped at `eval.max_episode_frames`. Episodes are split evenly over
the parallel envs and each env's first episodes are kept, so short episodes
are not over-represented (taking the first K to finish would bias the mean).
Scores: mean, median, IQM (mean of the middle 50%), std, and the
human-normalized mean where the game's published random and human scores
are known.

A checkpoint's evaluation (`evaluate_checkpoint`, `scripts/evaluate.py`)
draws its seeds from `wnrl.seeds`, apart from the training run's. It can film
one more game as a person sees it (`wnrl.video`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from wnrl import atomic
from wnrl import checkpoint as ckpt
from wnrl.actor import Actor
from wnrl.config import ActorConfig, Config, ConfigError, from_dict
from wnrl.envs import human_normalized, make_env
from wnrl.errors import one_line
from wnrl.nn import folded_state_dict
from wnrl.seeds import evaluation_seeds
from wnrl.stats import iqm
from wnrl.video import VideoResult, record_game, video_format


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]  # env steps per episode
    game: str

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def median(self) -> float:
        return float(np.median(self.returns))

    @property
    def iqm(self) -> float:
        return iqm(self.returns)

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    @property
    def human_normalized(self) -> float | None:
        return human_normalized(self.game, self.mean)

    def summary(self) -> dict:
        return {"game": self.game, "episodes": len(self.returns), "mean": self.mean,
                "median": self.median, "iqm": self.iqm, "std": self.std,
                "human_normalized": self.human_normalized, "returns": self.returns,
                "lengths": self.lengths}

    def table(self) -> str:
        hn = self.human_normalized
        rows = [("game", self.game), ("episodes", len(self.returns)),
                ("mean", f"{self.mean:.2f}"), ("median", f"{self.median:.2f}"),
                ("IQM", f"{self.iqm:.2f}"), ("std", f"{self.std:.2f}"),
                ("min / max", f"{min(self.returns):.1f} / {max(self.returns):.1f}"),
                ("human-normalized", "n/a" if hn is None else f"{100 * hn:.1f}%")]
        return "\n".join(f"{k:<18}{v}" for k, v in rows)


def evaluate_network(net: nn.Module, cfg: Config, episodes: int, epsilon: float | None = None,
                     seed: int = 0, actor_seed: int | None = None) -> EvalResult:
    """Play `episodes` whole games with `net` (any Q-network; WN is folded for acting).

    Env i of the vector env is seeded with `seed + i`; exploration draws from
    `actor_seed` (default: `seed`). Training's periodic evaluation passes
    `seed + 10000 + step`; `evaluate_checkpoint` passes `wnrl.seeds.evaluation_seeds`.
    """
    eps = cfg.eval.epsilon if epsilon is None else epsilon
    n = eval_num_envs(cfg, episodes)
    env = make_env(cfg.env, seed=seed, training=False, num_envs=n,
                   max_episode_frames=cfg.eval.max_episode_frames)
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    actor = Actor(env, net, ActorConfig(fixed_epsilons=(eps,) * n), total_steps=1,
                  clip_rewards=False, terminal_on_life_loss=False,
                  seed=seed if actor_seed is None else actor_seed)
    actor.set_weights({k: v.cpu() for k, v in folded_state_dict(net).items()})
    actor.reset_envs(seed)  # the env seeds, not the actor's (its default)
    got: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    try:
        while any(len(g) < q for g, q in zip(got, quota)):
            _, finished = actor.step()
            for ep in finished:
                if len(got[ep.env_index]) < quota[ep.env_index]:
                    got[ep.env_index].append((ep.ret, ep.length))
    finally:
        env.close()
    flat = [e for g in got for e in g]
    return EvalResult([float(r) for r, _ in flat], [int(n) for _, n in flat], cfg.env.id)


def eval_num_envs(cfg: Config, episodes: int) -> int:
    """Parallel envs of an evaluation of `episodes` games (at most `cfg.eval.num_envs`)."""
    return max(1, min(cfg.eval.num_envs, episodes))


def load_policy(path: str | Path, on_skip: ckpt.SkipHandler | None = None,
                ) -> tuple[Config, nn.Module, dict]:
    """Rebuild the config and online Q-network stored in a checkpoint file, or in a run
    directory's newest readable checkpoint (`on_skip(path, reason)` hears of each newer
    unreadable one passed over)."""
    from wnrl.training.parts import network_for

    state = ckpt.load(path, on_skip=on_skip)
    try:
        cfg = from_dict(state["config"])
        sig = state["signature"]
        online = state["learner"]["online"]
    except (KeyError, TypeError) as exc:
        raise ckpt.CheckpointError(f"checkpoint {path} lacks {exc} (not a training checkpoint)") \
            from None
    net = network_for(cfg, tuple(sig["obs_shape"]), sig["num_actions"])
    try:
        net.load_state_dict(online)
    except RuntimeError as exc:
        raise ckpt.CheckpointError(f"checkpoint {path} does not fit its own network: "
                                   f"{one_line(exc)}") from None
    return cfg, net.eval(), state


@dataclass(frozen=True)
class VideoOptions:
    """`--video PATH [--video-view game|agent] [--video-max-frames N] [--video-scale K]`
    (see `wnrl.video`)."""

    path: str
    view: str = "game"
    max_frames: int | None = None
    scale: int = 1


def evaluate_checkpoint(path: str | Path, episodes: int = 30, epsilon: float | None = None,
                        seed: int = 0, video: VideoOptions | None = None,
                        json_path: str | None = None, on_skip: ckpt.SkipHandler | None = None,
                        ) -> tuple[EvalResult, VideoResult | None]:
    """Score a checkpoint on `episodes` whole games; optionally film one more game.

    Seeds come from `wnrl.seeds.evaluation_seeds(seed)`, a stream apart from
    training's, so no scored or filmed game replays a training game. The seeds
    are written to the JSON. The filmed game starts as the first scored game of
    env 0 does (same env seed), but it is played on its own and not scored. A run
    directory scores its newest readable checkpoint (see `load_policy`).
    """
    cfg, net, state = load_policy(path, on_skip)
    if video and len(state["signature"]["obs_shape"]) != 3:
        raise ConfigError(f"--video needs an Atari checkpoint (image observations); {path} "
                          f"was trained on {cfg.env.id}")
    if video:
        video_format(video.path)  # a bad suffix fails before the games are played
    eps = cfg.eval.epsilon if epsilon is None else epsilon
    seeds = evaluation_seeds(seed)
    res = evaluate_network(net, cfg, episodes, eps, seed=seeds.env, actor_seed=seeds.actor)
    filmed = None
    if video:
        filmed = record_game(net, cfg, video.path, env_seed=seeds.env,
                             actor_seed=seeds.video_actor, epsilon=eps, view=video.view,
                             max_frames=video.max_frames, scale=video.scale)
    if json_path:
        out = res.summary() | {"checkpoint": str(path), "env_steps": state.get("env_steps"),
                               "epsilon": eps, "eval_config": dataclasses.asdict(cfg.eval),
                               "seeds": seeds.to_dict(eval_num_envs(cfg, episodes)),
                               "video": None if filmed is None else filmed.to_dict()}
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(json_path, json.dumps(out, indent=2) + "\n")
    return res, filmed
