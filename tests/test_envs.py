"""Tests for wnrl.envs: names, protocol options, and autoreset semantics on real envs."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv

from wnrl.config import ConfigError, EnvConfig
from wnrl.envs import (
    HUMAN_RANDOM_SCORES,
    StepResult,
    VecEnv,
    atari_options,
    human_normalized,
    make_env,
    resolve_game,
)


def _env(game: str = "pong", *, n: int = 2, seed: int = 0, **kw) -> VecEnv:
    training = kw.pop("training", True)
    frames = kw.pop("max_episode_frames", None)
    cfg = EnvConfig(id=game, num_envs=n, num_threads=1, **kw)
    return make_env(cfg, seed=seed, training=training, max_episode_frames=frames)


def _play(env: VecEnv, steps: int, seed: int = 0, action: int | None = None) -> list[StepResult]:
    """Steps with uniform random actions (or a fixed one); returns every StepResult."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        a = rng.integers(0, env.num_actions, env.num_envs) if action is None else \
            np.full(env.num_envs, action)
        out.append(env.step(a))
    return out


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("name,rom", [
    ("pong", "pong"), ("Pong", "pong"), ("ALE/Pong-v5", "pong"), ("PongNoFrameskip-v4", "pong"),
    ("space_invaders", "space_invaders"), ("SpaceInvaders", "space_invaders"),
    ("ALE/SpaceInvaders-v5", "space_invaders"), ("MsPacman", "ms_pacman"),
    ("ALE/Pitfall2-v5", "pitfall2"),
])
def test_resolve_game_spellings(name: str, rom: str) -> None:
    assert resolve_game(name) == rom


@pytest.mark.parametrize("name,suggestion", [("Pongg", "pong"), ("SpaceInvader", "space_invaders"),
                                             ("ALE/Breakot-v5", "breakout")])
def test_unknown_game_is_one_line_with_suggestion(name: str, suggestion: str) -> None:
    for call in (lambda: resolve_game(name), lambda: make_env(EnvConfig(id=name), seed=0)):
        with pytest.raises(ConfigError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and repr(name) in msg and suggestion in msg


def test_human_normalized() -> None:
    assert set(HUMAN_RANDOM_SCORES) <= set(roms.get_all_rom_ids())
    assert len(HUMAN_RANDOM_SCORES) == 57
    assert human_normalized("pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("ALE/Pong-v5", 14.6) == pytest.approx(1.0)
    assert human_normalized("Breakout", 30.5 + 28.8) == pytest.approx(2.0)
    assert human_normalized("CartPole-v1", 500.0) is None


# ----------------------------------------------------------------------------- options

def test_every_atari_option_is_explicit_and_follows_the_config() -> None:
    cfg = EnvConfig()
    opts = atari_options(cfg, num_envs=3, max_episode_frames=cfg.max_episode_frames)
    accepted = set(inspect.signature(AtariVectorEnv.__init__).parameters) - {"self", "game"}
    assert set(opts) == accepted  # nothing left to ale-py's defaults
    assert opts["repeat_action_probability"] == 0.25
    assert opts["reward_clipping"] is False and opts["use_fire_reset"] is False
    assert opts["episodic_life"] is False and opts["life_loss_info"] is False
    assert opts["full_action_space"] is False and opts["maxpool"] is True
    assert (opts["frameskip"], opts["stack_num"], opts["noop_max"]) == (4, 4, 30)
    assert opts["max_num_frames_per_episode"] == 108_000
    assert 1 <= opts["num_threads"] <= 3
    custom = dataclasses.replace(cfg, sticky_action_prob=0.0, frame_skip=3, frame_stack=2,
                                 noop_max=0, full_action_space=True, num_threads=5)
    opts = atari_options(custom, num_envs=2, max_episode_frames=400)
    assert (opts["repeat_action_probability"], opts["frameskip"], opts["stack_num"],
            opts["noop_max"], opts["full_action_space"], opts["num_threads"],
            opts["max_num_frames_per_episode"]) == (0.0, 3, 2, 0, True, 5, 400)


def test_action_sets_and_shapes() -> None:
    with _env("pong") as env:
        assert (env.num_envs, env.obs_shape, env.obs_dtype, env.num_actions) == \
            (2, (4, 84, 84), np.uint8, 6)
        assert env.action_meanings[:2] == ("NOOP", "FIRE")
    with _env("pong", full_action_space=True, frame_stack=2) as env:
        assert env.num_actions == 18 and env.obs_shape == (2, 84, 84)


# ----------------------------------------------------------------------------- behaviour

def test_rewards_are_raw_game_scores() -> None:
    with _env("space_invaders", n=2) as env:
        env.reset()
        rewards = np.stack([r.reward for r in _play(env, 150)])
    assert rewards.dtype == np.float32
    assert rewards.max() >= 5.0  # invaders are worth 5..30 points; clipping would give 1


def test_reset_stack_is_zero_padded_and_steps_shift_it() -> None:
    with _env("pong", n=2) as env:
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :3].any() and obs[:, 3].reshape(2, -1).any(axis=1).all()
        kept = obs
        for result in _play(env, 5):
            assert np.array_equal(result.obs[:, :-1], obs[:, 1:])  # one new frame per step
            obs = result.obs
        assert not kept[:, :3].any()  # earlier arrays are never overwritten by the env


def test_truncation_then_reset_step() -> None:
    # 40 frames = 10 steps; the reset step plays no frame, so the next cut is 11 steps later.
    with _env("pong", n=2, noop_max=0, max_episode_frames=40) as env:
        obs = env.reset()
        results = _play(env, 25)
    trunc = [t for t, r in enumerate(results) if r.truncated.any()]
    resets = [t for t, r in enumerate(results) if r.reset_step.any()]
    assert trunc == [9, 20] and resets == [10, 21]
    for t, r in enumerate(results):
        prev = obs if t == 0 else results[t - 1].obs
        assert np.array_equal(r.truncated, np.full(2, t in trunc))
        assert np.array_equal(r.reset_step, np.full(2, t in resets))
        assert not r.terminated.any() and not r.life_lost.any()
        if t in resets:  # action ignored; first observation of a new episode
            assert not r.reward.any() and not r.truncated.any()
            assert not r.obs[:, :3].any() and r.obs[:, 3].any()
        else:  # includes the truncation step: the real final observation
            assert np.array_equal(r.obs[:, :-1], prev[:, 1:]) and r.obs[:, 3].any()


def test_life_loss_and_game_over_on_breakout() -> None:
    with _env("breakout", n=1, seed=3) as env:
        env.reset()
        results = _play(env, 400)
    ends = [t for t, r in enumerate(results) if r.terminated[0]]
    assert ends, "random Breakout should end within 400 steps"
    end = ends[0]
    lost = [t for t, r in enumerate(results[: end + 1]) if r.life_lost[0]]
    assert len(lost) == 5 and lost[-1] == end  # 5 lives, the last one ends the game
    after = results[end + 1]
    assert after.reset_step[0] and not after.life_lost[0] and not after.terminated[0]
    assert not any(r.terminated[0] for r in results[:end])  # a life loss is not a terminal
    with _env("breakout", n=1, seed=3, training=False) as env:  # evaluation: whole games
        env.reset()
        assert not any(r.life_lost.any() for r in _play(env, 400))


def test_same_seed_same_observations() -> None:
    def run(seed: int) -> np.ndarray:
        with _env("breakout", n=2, seed=seed) as env:
            first = env.reset()
            again = env.reset()
            assert np.array_equal(first, again)
            return np.stack([first] + [r.obs for r in _play(env, 40)])

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# ----------------------------------------------------------------------------- classic control

def test_classic_control_shapes_and_reset_steps() -> None:
    with _env("CartPole-v1", n=3, max_episode_frames=5) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions, env.is_atari) == \
            ((4,), np.float32, 2, False)
        obs = env.reset()
        assert obs.shape == (3, 4) and obs.dtype == np.float32
        results = _play(env, 12, action=0)
    for t, r in enumerate(results):
        assert r.obs.dtype == np.float32 and r.reward.dtype == np.float32
        assert not r.life_lost.any()
        assert np.array_equal(r.truncated, np.full(3, t in (4, 10)))
        assert np.array_equal(r.reset_step, np.full(3, t in (5, 11)))
        assert not r.reset_step.any() or not r.reward.any()


def test_classic_control_termination_and_time_limit() -> None:
    with _env("CartPole-v1", n=2, seed=1) as env:
        assert env._env.envs[0].spec.max_episode_steps == 500  # 108k frames > the env's own cap
        env.reset()
        results = _play(env, 40, action=0)  # always push left: the pole falls
    done = [t for t, r in enumerate(results) if r.terminated[0]]
    assert done and results[done[0] + 1].reset_step[0]
    assert not results[done[0]].reset_step[0] and not results[done[0]].truncated[0]
    with _env("Acrobot-v1", n=1) as env:
        assert env.reset().shape == (1, 6) and env.num_actions == 3
