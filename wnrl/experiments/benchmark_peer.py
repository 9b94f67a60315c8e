"""The benchmark's peer: Stable-Baselines3 DQN (`CnnPolicy`), two ways.

Installed with the `bench` extra (`pip install -e ".[bench]"`). Both ways play
`ALE/<Game>-v5` with frame skip 1 in the emulator and SB3's `AtariWrapper` (no-op
starts, frame skip 4 with max-pool, life-loss terminals, reward clipping, 84x84
grayscale) with sticky actions 0.25 and a stack of 4 frames: the protocol wnrl
trains with. `PEERS` names them:

- `sb3_zoo`: as SB3's users run it, RL Zoo's Atari hyperparameters (`dqn.yml`,
  `atari`): one env, `train_freq` 4, `gradient_steps` 1, batch 32, target update
  every 1,000 env steps, lr 1e-4, SB3's default Adam;
- `sb3_matched`: wnrl's settings where SB3 has them: `bc.num_envs` envs, one update
  per 4 env steps (`peer_schedule`), wnrl's target period, and Adam with wnrl's
  lr, betas, eps and fused kernel (`optimizer_kwargs`).

Both: buffer `bc.replay_capacity`, `bc.learning_starts`, a fixed epsilon of 0.01
(as wnrl's runs: every env step runs the forward), seed 0. `PeerRun` advances a
model in parts (`learn(..., reset_num_timesteps=False)`) for
`benchmark_e2e.time_in_parts`; `peer_update` is its learner-only bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from wnrl.config import LearnerConfig

if TYPE_CHECKING:
    from wnrl.experiments.bench_config import BenchConfig

PEERS = ("sb3_zoo", "sb3_matched")


def peer_available() -> bool:
    """Whether stable-baselines3, its Atari wrappers (OpenCV) and ale-py import."""
    try:
        import ale_py  # noqa: F401
        import cv2  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


def make_peer_env(game: str, seed: int, num_envs: int = 1) -> Any:
    """SB3's Atari pipeline for `game` (a wnrl game name such as `pong`): `num_envs`
    wrapper chains in a `DummyVecEnv` (RL Zoo's default), stacked 4, channels first
    (what SB3 wraps a `CnnPolicy`'s env in by itself)."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

    from wnrl.envs import resolve_game

    gym.register_envs(ale_py)
    name = "".join(p.capitalize() for p in resolve_game(game).split("_"))

    def make() -> gym.Env:
        env = gym.make(f"ALE/{name}-v5", frameskip=1, repeat_action_probability=0.25,
                       full_action_space=False)
        return AtariWrapper(env, noop_max=30, frame_skip=4, terminal_on_life_loss=True,
                            clip_reward=True)

    venv = DummyVecEnv([make] * num_envs)
    venv.seed(seed)
    return VecTransposeImage(VecFrameStack(venv, n_stack=4))


def peer_schedule(num_envs: int, env_steps_per_update: int = 4) -> tuple[int, int]:
    """SB3's (`train_freq` in vector steps, `gradient_steps`) that make one update per
    `env_steps_per_update` env steps over `num_envs` envs: (1, 2) for 8 envs, (4, 1) for 1."""
    common = math.gcd(num_envs, env_steps_per_update)
    return env_steps_per_update // common, num_envs // common


def peer_settings(bc: BenchConfig, peer: str) -> dict[str, Any]:
    """The DQN constructor's arguments (JSON-ready) and its number of envs for `peer`."""
    common = dict(buffer_size=bc.replay_capacity, learning_starts=bc.learning_starts,
                  batch_size=32, exploration_initial_eps=0.01, exploration_final_eps=0.01,
                  optimize_memory_usage=False, seed=0)
    if peer == "sb3_zoo":  # rl-baselines3-zoo hyperparams/dqn.yml, `atari`
        return {"num_envs": 1, **common, "learning_rate": 1e-4, "train_freq": 4,
                "gradient_steps": 1, "target_update_interval": 1000, "gamma": 0.99,
                "max_grad_norm": 10, "policy_kwargs": {}}
    lc = LearnerConfig()
    train_freq, gradient_steps = peer_schedule(bc.num_envs)
    return {"num_envs": bc.num_envs, **common, "learning_rate": lc.lr,
            "train_freq": train_freq, "gradient_steps": gradient_steps,
            "target_update_interval": 4 * bc.target_update_period,  # env steps in SB3
            "gamma": lc.gamma, "max_grad_norm": lc.max_grad_norm,
            "policy_kwargs": {"optimizer_kwargs": {
                "betas": (lc.beta1, lc.beta2), "eps": lc.eps, "fused": True}}}


def make_peer(bc: BenchConfig, peer: str, env: Any) -> Any:
    """An SB3 `DQN("CnnPolicy", env)` with `peer_settings`, logging to nowhere."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.logger import Logger

    kw = peer_settings(bc, peer)
    kw.pop("num_envs")
    model = DQN("CnnPolicy", env, device=bc.device, verbose=0, **kw)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


class PeerRun:
    """An SB3 DQN training run, advanced in parts (a `benchmark_e2e.Run`)."""

    def __init__(self, bc: BenchConfig, peer: str) -> None:
        self.num_envs = peer_settings(bc, peer)["num_envs"]
        self.env = make_peer_env(bc.game, seed=0, num_envs=self.num_envs)
        self.model = make_peer(bc, peer, self.env)

    def advance(self, env_steps: int) -> tuple[int, int]:
        s0, u0 = self.model.num_timesteps, self.model._n_updates
        self.model.learn(total_timesteps=env_steps, reset_num_timesteps=False)
        return self.model.num_timesteps - s0, self.model._n_updates - u0

    def close(self) -> None:
        self.env.close()


def peer_update(bc: BenchConfig, peer: str) -> Callable[[], object]:
    """The peer's learner-only bound: one `DQN.train` gradient step of `peer`'s model on
    a fixed batch of 32 random transitions (as wnrl's bound: no sampling)."""
    env = make_peer_env(bc.game, seed=0)
    model = make_peer(dataclasses.replace(bc, replay_capacity=64), peer, env)
    rng, shape = np.random.default_rng(4), env.observation_space.shape
    buf = model.replay_buffer
    for _ in range(32):
        obs = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
        nxt = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
        buf.add(obs, nxt, rng.integers(0, env.action_space.n, (1, 1)),
                rng.standard_normal(1).astype(np.float32), np.zeros(1, bool), [{}])
    fixed = buf.sample(32)
    buf.sample = lambda batch_size, env=None: fixed  # type: ignore[method-assign]
    env.close()
    return lambda: model.train(gradient_steps=1, batch_size=32)
