"""Videos hold the game as a person sees it (RGB screen) or, as an option, the agent's view."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from wnrl.config import Config, ConfigError, EnvConfig, EvalConfig
from wnrl.networks import make_q_network
from wnrl.screen_env import ScreenEnv
from wnrl.seeds import evaluation_seeds
from wnrl.video import record_game

CFG = Config(env=EnvConfig(id="pong"))
SEED = evaluation_seeds(0).env  # a real evaluation seed (above 2**30)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return make_q_network((4, 84, 84), 6, norm="weight").eval()


def _film(path: Path, **kw) -> tuple[np.ndarray, object]:
    res = record_game(_net(), CFG, path, env_seed=SEED, actor_seed=0, epsilon=0.001, **kw)
    frames = np.stack(list(iio.imiter(path)))
    return frames, res


def _screens(steps: int) -> list[np.ndarray]:
    """The RGB screen at reset and after each emulator frame of `steps` NOOP steps."""
    env = ScreenEnv(CFG.env, seed=SEED, max_episode_frames=10_000, rgb=True)
    env.reset()
    out = [env.screen()]
    for _ in range(steps):
        out += env.step(0).frames
    return out


def test_mp4_holds_every_rgb_frame_of_the_game(tmp_path: Path) -> None:
    frames, res = _film(tmp_path / "game.mp4", max_frames=90)
    assert frames.shape == (90, 210, 160, 3) and frames.dtype == np.uint8
    assert res.frames == 90 and res.fps == 60 and not res.complete and res.length == 23
    red, green, blue = (frames[..., c].astype(int) for c in range(3))
    assert np.abs(red - green).mean() > 20 and np.abs(green - blue).mean() > 20  # colour
    # Pong's opening frames do not depend on the actions: the video shows the real screen
    # (libx264 is lossy, so close, not equal)
    truth = np.stack(_screens(25)[:40])
    assert np.abs(frames[:40].astype(int) - truth).mean() < 4


def test_gif_is_the_exact_screen_once_per_step_and_scales(tmp_path: Path) -> None:
    frames, res = _film(tmp_path / "game.gif", max_frames=40, scale=2)
    assert res.fps == 15 and (res.width, res.height) == (320, 420)
    assert res.bytes == (tmp_path / "game.gif").stat().st_size < 1_000_000
    assert frames.shape[1:] == (420, 320, 3) and len(frames) <= 40  # GIF merges repeats
    truth = _screens(3)
    first = frames[0][::2, ::2, :3]
    assert np.array_equal(first, truth[0])  # the reset screen, pixel for pixel
    assert np.array_equal(frames[0][1::2, 1::2, :3], first)  # nearest-neighbour 2x


def test_agent_view_is_the_upscaled_grayscale_input(tmp_path: Path) -> None:
    frames, res = _film(tmp_path / "agent.gif", view="agent", max_frames=5)
    assert res.view == "agent" and (res.width, res.height) == (336, 336)
    obs = ScreenEnv(CFG.env, seed=SEED, max_episode_frames=10_000).reset()[-1]
    gray = frames[0][..., 0]
    assert np.array_equal(gray, np.repeat(np.repeat(obs, 4, 0), 4, 1))
    assert all(np.array_equal(frames[0][..., c], gray) for c in (1, 2))


def test_a_whole_game_is_complete_with_its_score(tmp_path: Path) -> None:
    cfg = Config(env=EnvConfig(id="pong"), eval=EvalConfig(max_episode_frames=400))
    res = record_game(_net(), cfg, tmp_path / "g.gif", env_seed=SEED, actor_seed=0,
                      epsilon=1.0)
    assert res.complete and res.length == 100  # capped at 400 frames = 100 steps
    assert res.frames == 101  # the reset screen and one per step
    assert res.score <= 0


def test_bad_video_requests(tmp_path: Path) -> None:
    for kw in ({"path": tmp_path / "x.avi"}, {"view": "both"}, {"scale": 0},
               {"max_frames": 0}):
        args = {"path": tmp_path / "x.gif", **kw}
        with pytest.raises(ConfigError):
            record_game(_net(), CFG, args.pop("path"), env_seed=SEED, actor_seed=0,
                        epsilon=0.0, **args)
    assert not any(tmp_path.iterdir())
