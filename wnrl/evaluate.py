"""Evaluation protocol and scores (Machado et al. 2018).

Whole games (no life-loss terminals), raw unclipped score, epsilon 0.001,
episodes capped at `eval.max_episode_frames`. Episodes are split evenly over
the parallel envs and each env's first episodes are kept, so short episodes
are not over-represented (taking the first K to finish would bias the mean).
Scores: mean, median, IQM (mean of the middle 50%), std, and the
human-normalized mean where the game's published random and human scores
are known.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean
from torch import nn

from wnrl import atomic
from wnrl import checkpoint as ckpt
from wnrl.actor import Actor
from wnrl.config import ActorConfig, Config, ConfigError, from_dict
from wnrl.envs import human_normalized, make_env
from wnrl.nn import folded_state_dict


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
        return float(trim_mean(self.returns, 0.25))

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
                     seed: int = 0, video_path: str | Path | None = None) -> EvalResult:
    """Play `episodes` whole games with `net` (any Q-network; WN is folded for acting)."""
    eps = cfg.eval.epsilon if epsilon is None else epsilon
    n = max(1, min(cfg.eval.num_envs, episodes))
    env = make_env(cfg.env, seed=seed, training=False, num_envs=n,
                   max_episode_frames=cfg.eval.max_episode_frames)
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    actor = Actor(env, net, ActorConfig(fixed_epsilons=(eps,) * n), total_steps=1,
                  clip_rewards=False, terminal_on_life_loss=False, seed=seed)
    actor.set_weights({k: v.cpu() for k, v in folded_state_dict(net).items()})
    got: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    frames: list[np.ndarray] = []
    recording = video_path is not None
    try:
        while any(len(g) < q for g, q in zip(got, quota)):
            if recording:
                frames.append(np.asarray(actor.obs[0])[-1])
            _, finished = actor.step()
            for ep in finished:
                if ep.env_index == 0 and recording:
                    recording = False
                    _write_video(video_path, frames)
                if len(got[ep.env_index]) < quota[ep.env_index]:
                    got[ep.env_index].append((ep.ret, ep.length))
    finally:
        env.close()
    flat = [e for g in got for e in g]
    return EvalResult([float(r) for r, _ in flat], [int(n) for _, n in flat], cfg.env.id)


def _write_video(path: str | Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """MP4 of the agent's view (grayscale observations upscaled 4x; 2D frames only),
    written atomically (a reader never sees half a video)."""
    import imageio.v2 as imageio

    if not frames or np.asarray(frames[0]).ndim != 2:
        raise ValueError("video needs image observations (an Atari env)")
    with atomic.atomic_path(path, keep_suffix=True) as tmp, imageio.get_writer(
            str(tmp), fps=fps, codec="libx264", macro_block_size=1) as w:
        for f in frames:
            w.append_data(np.repeat(np.repeat(f, 4, axis=0), 4, axis=1))


def load_policy(path: str | Path) -> tuple[Config, nn.Module, dict]:
    """Rebuild the config and online Q-network stored in a checkpoint (file or run dir)."""
    from wnrl.agents import get_agent
    from wnrl.networks import make_q_network

    state = ckpt.load(path)
    try:
        cfg = from_dict(state["config"])
        sig = state["signature"]
        online = state["learner"]["online"]
    except (KeyError, TypeError) as exc:
        raise ckpt.CheckpointError(f"checkpoint {path} lacks {exc} (not a training checkpoint)") \
            from None
    agent = get_agent(cfg.agent)
    net = make_q_network(tuple(sig["obs_shape"]), sig["num_actions"], norm=agent.norm,
                         dueling=cfg.network.dueling, hidden_sizes=cfg.network.hidden_sizes)
    try:
        net.load_state_dict(online)
    except RuntimeError as exc:
        raise ckpt.CheckpointError(f"checkpoint {path} does not fit its own network: "
                                   f"{str(exc).splitlines()[0][:200]}") from None
    return cfg, net.eval(), state


def evaluate_checkpoint(path: str | Path, episodes: int = 30, epsilon: float | None = None,
                        seed: int = 0, video: str | None = None,
                        json_path: str | None = None) -> EvalResult:
    cfg, net, state = load_policy(path)
    if video and len(state["signature"]["obs_shape"]) != 3:
        raise ConfigError(f"--video needs an Atari checkpoint (image observations); {path} "
                          f"was trained on {cfg.env.id}")
    res = evaluate_network(net, cfg, episodes, epsilon, seed=seed, video_path=video)
    if json_path:
        out = res.summary() | {"checkpoint": str(path), "env_steps": state.get("env_steps"),
                               "epsilon": cfg.eval.epsilon if epsilon is None else epsilon,
                               "eval_config": dataclasses.asdict(cfg.eval)}
        atomic.write_text(json_path, json.dumps(out, indent=2) + "\n")
    return res
