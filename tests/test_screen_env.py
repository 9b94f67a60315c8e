"""ScreenEnv plays exactly what ale-py's vector env plays, and shows the RGB screen."""

from __future__ import annotations

import numpy as np
import pytest

from wnrl.config import EnvConfig
from wnrl.envs import make_env
from wnrl.screen_env import ScreenEnv, _uniform_below, area_resize


def _lockstep(game: str, seed: int, steps: int, frames: int, **kw) -> tuple[int, int, float]:
    """Steps a 1-env vector env and a ScreenEnv with the same random actions and asserts
    identical observations, rewards and flags. Returns (games ended, truncations, |reward|)."""
    cfg = EnvConfig(id=game, num_envs=1, num_threads=1, **kw)
    vec = make_env(cfg, seed=seed, training=False, max_episode_frames=frames)
    one = ScreenEnv(cfg, seed=seed, max_episode_frames=frames)
    rng = np.random.default_rng(seed)
    ends = truncs = 0
    rewards = 0.0
    try:
        obs = vec.reset()
        assert np.array_equal(obs[0], one.reset())
        for _ in range(steps):
            a = int(rng.integers(one.num_actions))
            r = vec.step(np.array([a]))
            if r.reset_step[0]:  # the vector env's autoreset step plays the next game's reset
                assert np.array_equal(r.obs[0], one.reset())
                continue
            out = one.step(a)
            assert np.array_equal(r.obs[0], out.obs)
            assert (r.reward[0], r.terminated[0], r.truncated[0]) == \
                (out.reward, out.terminated, out.truncated)
            ends += out.terminated or out.truncated
            truncs += out.truncated
            rewards += abs(out.reward)
    finally:
        vec.close()
    return ends, truncs, rewards


@pytest.mark.parametrize("game, seed, frames, kw", [
    ("breakout", 5, 108_000, {}),  # whole games: game overs, no-ops, sticky actions
    ("breakout", 0, 401, {}),  # the cap falls in the middle of a frame skip
    ("space_invaders", 2_000_000_011, 600, {"noop_max": 7, "sticky_action_prob": 0.5}),
])
def test_same_games_as_the_vector_env(game: str, seed: int, frames: int, kw: dict) -> None:
    ends, truncs, rewards = _lockstep(game, seed, 1200, frames, **kw)
    assert ends >= 5 and rewards > 0
    assert (truncs > 0) == (frames < 108_000)


def test_noop_counts_are_uniform_from_zero_to_noop_max_minus_one() -> None:
    """The draw the lockstep test above shows ale-py makes: 0..29 frames for noop_max=30."""
    gen = np.random.MT19937()
    gen._legacy_seeding(0)
    counts = np.bincount([_uniform_below(gen, 30) for _ in range(6000)], minlength=30)
    assert len(counts) == 30 and counts.min() > 150  # zero included, 30 never drawn
    gen._legacy_seeding(0)
    assert {_uniform_below(gen, 1) for _ in range(10)} == {0}  # noop_max 0 or 1: no no-ops


def test_another_seed_plays_another_game() -> None:
    cfg = EnvConfig(id="breakout")
    a, b = (ScreenEnv(cfg, seed=s, max_episode_frames=10_000) for s in (1, 2))
    a.reset(), b.reset()
    obs = [(a.step(k % 4).obs, b.step(k % 4).obs) for k in range(60)]
    assert any(not np.array_equal(x, y) for x, y in obs)


def test_rgb_frames_are_the_screen() -> None:
    env = ScreenEnv(EnvConfig(id="pong"), seed=4, max_episode_frames=10_000, rgb=True)
    first = env.reset()
    assert first.shape == (4, 84, 84) and not first[:3].any() and first[3].any()
    out = env.step(0)
    assert len(out.frames) == 4
    for f in out.frames:
        assert f.shape == (210, 160, 3) and f.dtype == np.uint8
    assert np.array_equal(out.frames[-1], env.screen())
    assert (out.frames[-1][..., 0] != out.frames[-1][..., 1]).any()  # colour, not gray
    assert env.action_meanings[:2] == ("NOOP", "FIRE")


def test_area_resize_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")  # the `bench` extra installs OpenCV
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (210, 160), dtype=np.uint8),
                np.full((210, 160), 137, np.uint8), (np.arange(210 * 160) % 256).astype(
                    np.uint8).reshape(210, 160)):
        want = cv2.resize(img, (84, 84), interpolation=cv2.INTER_AREA)
        assert np.array_equal(area_resize(img, 84, 84), want)


def test_area_resize_averages_areas() -> None:
    img = np.zeros((210, 160), np.uint8)
    img[:106] = 200  # output row 42 covers source rows 105..107.5, one of them bright
    out = area_resize(img, 84, 84)
    assert (out[:42] == 200).all() and (out[43:] == 0).all() and out.shape == (84, 84)
    assert (out[42] == 80).all()  # 200 * 1 / 2.5
    with pytest.raises(ValueError, match="non-integer"):
        area_resize(np.zeros((168, 168), np.uint8), 84, 84)
