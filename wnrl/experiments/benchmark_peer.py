"""The peer of the benchmark: Stable-Baselines3 DQN (`CnnPolicy`) on the same Atari settings.

Installed with the `bench` extra (`pip install -e ".[bench]"`). The peer plays
`ALE/<Game>-v5` with frame skip 1 in the emulator and SB3's `AtariWrapper`
(no-op starts, frame skip 4 with max-pool, life-loss terminals, reward
clipping, 84x84 grayscale) with sticky actions 0.25 and a stack of 4 frames:
the protocol wnrl trains with. It uses one env, as SB3's DQN Atari recipes do;
the replay ratio (one update per 4 env steps), batch 32, buffer size, target
period, learning start and a fixed epsilon of 0.01 match wnrl's end-to-end run,
and the clock runs over the same number of env steps after learning starts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wnrl.experiments.bench_config import BenchConfig


def peer_available() -> bool:
    """Whether stable-baselines3, its Atari wrappers (OpenCV) and ale-py import."""
    try:
        import ale_py  # noqa: F401
        import cv2  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


def make_peer_env(game: str, seed: int) -> Any:
    """SB3's Atari pipeline for `game` (a wnrl game name such as `pong`)."""
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

    venv = DummyVecEnv([make])
    venv.seed(seed)
    return VecTransposeImage(VecFrameStack(venv, n_stack=4))


def bench_peer(bc: BenchConfig) -> dict[str, Any]:
    """Env steps/s of SB3 DQN over `bc.measure_steps` env steps after learning starts."""
    if not peer_available():
        return {"skipped": "stable-baselines3 not installed (pip install -e '.[bench]')"}
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        """Records the time at the learning start and at the end."""

        def __init__(self) -> None:
            super().__init__()
            self.t0: float | None = None
            self.t1 = 0.0
            self.s0 = 0

        def _on_step(self) -> bool:
            if self.t0 is None and self.num_timesteps > bc.learning_starts:
                self.t0, self.s0 = time.perf_counter(), self.num_timesteps
            self.t1 = time.perf_counter()
            return True

    threads = torch.get_num_threads()
    env = make_peer_env(bc.game, seed=0)
    model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=bc.replay_capacity,
                learning_starts=bc.learning_starts, batch_size=32, train_freq=4,
                gradient_steps=1, target_update_interval=4 * bc.target_update_period,
                exploration_initial_eps=0.01, exploration_final_eps=0.01,
                optimize_memory_usage=False, device=bc.device, seed=0, verbose=0)
    clock = Clock()
    model.learn(total_timesteps=bc.learning_starts + bc.measure_steps + 1, callback=clock)
    env.close()
    torch.set_num_threads(threads)  # SB3 may change it
    assert clock.t0 is not None
    steps = model.num_timesteps - clock.s0
    import stable_baselines3

    return {"env_steps_per_s": steps / (clock.t1 - clock.t0), "env_steps": steps,
            "seconds": clock.t1 - clock.t0, "version": stable_baselines3.__version__,
            "num_envs": 1}
