"""MinAtar envs (wnrl.minatar_env through wnrl.envs.make_env): the Transition contract,
checked against the minatar package's own `Environment` stepped by hand with the same seeds.

Skipped when the optional `minatar` package (GPL-3.0) is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

minatar = pytest.importorskip("minatar")

from wnrl.config import ConfigError, EnvConfig  # noqa: E402
from wnrl.envs import StepResult, VecEnv, make_env  # noqa: E402
from wnrl.minatar_env import minatar_game  # noqa: E402

CHANNELS = {"breakout": 4, "seaquest": 10, "space_invaders": 6}


def _env(game: str = "breakout", *, n: int = 2, seed: int = 0, **kw) -> VecEnv:
    frames = kw.pop("max_episode_frames", None)
    cfg = EnvConfig(id=f"minatar/{game}", num_envs=n, **kw)
    return make_env(cfg, seed=seed, max_episode_frames=frames)


def _actions(env: VecEnv, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, env.num_actions, (steps, env.num_envs))


class Reference:
    """One `minatar.Environment` driven by hand with the VecEnv contract (next-step autoreset,
    zero-padded stack of S frames, episode cap) as an independent statement of it."""

    def __init__(self, game: str, seed: int, stack: int, sticky: float, cap: int) -> None:
        self.env = minatar.Environment(game, sticky_action_prob=sticky)
        self.env.seed(seed)
        self.stack, self.cap = stack, cap
        self.done = False
        self._new_episode()

    def _frame(self) -> np.ndarray:
        return self.env.state().transpose(2, 0, 1).astype(np.uint8)

    def _new_episode(self) -> None:
        self.env.reset()
        self.frames = [np.zeros_like(self._frame())] * (self.stack - 1) + [self._frame()]
        self.t = 0

    def obs(self) -> np.ndarray:
        return np.stack(self.frames)

    def step(self, action: int) -> tuple[float, bool, bool, bool]:
        """-> (reward, terminated, truncated, reset_step)."""
        if self.done:
            self._new_episode()
            self.done = False
            return 0.0, False, False, True
        reward, term = self.env.act(action)
        self.t += 1
        self.frames = self.frames[1:] + [self._frame()]
        trunc = not term and self.t >= self.cap
        self.done = bool(term) or trunc
        return float(reward), bool(term), trunc, False


@pytest.mark.parametrize("game,stack", [("breakout", 1), ("space_invaders", 2),
                                        ("seaquest", 3)])
def test_matches_minatar_environment_stepped_by_hand(game: str, stack: int) -> None:
    """Same seeds, same actions: identical stacks, rewards, terminals, autoreset rows."""
    n, steps, seed = 3, 300, 11
    with _env(game, n=n, seed=seed, frame_stack=stack, sticky_action_prob=0.1,
              full_action_space=True) as env:
        assert env.obs_shape == (stack, CHANNELS[game], 10, 10) and env.num_actions == 6
        refs = [Reference(game, seed + i, stack, 0.1, 100_000) for i in range(n)]
        obs = env.reset()
        assert obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
        assert np.array_equal(obs, np.stack([r.obs() for r in refs]))
        if stack > 1:
            assert not obs[:, :-1].any()  # zero-padded new-episode stack
        ends = resets = 0
        for a in _actions(env, steps, seed=1):
            res = env.step(a)
            want = [r.step(int(ai)) for r, ai in zip(refs, a)]
            assert np.array_equal(res.obs, np.stack([r.obs() for r in refs]))
            assert np.array_equal(res.reward, np.array([w[0] for w in want], np.float32))
            assert np.array_equal(res.terminated, [w[1] for w in want])
            assert np.array_equal(res.truncated, [w[2] for w in want])
            assert np.array_equal(res.reset_step, [w[3] for w in want])
            assert not res.life_lost.any()
            ends, resets = ends + res.terminated.sum(), resets + res.reset_step.sum()
        assert ends >= 3 and resets >= ends - n  # random play ends episodes: both paths ran


def test_stack_shifts_and_reset_step_restarts_it() -> None:
    with _env("breakout", n=2, seed=3, frame_stack=3) as env:
        prev = env.reset()
        for a in _actions(env, 200, seed=2):
            res = env.step(a)
            for i in range(2):
                if res.reset_step[i]:
                    assert res.reward[i] == 0 and not res.terminated[i] and not res.truncated[i]
                    assert not res.obs[i, :2].any() and res.obs[i, 2].any()
                else:
                    assert np.array_equal(res.obs[i, :-1], prev[i, 1:])
            prev = res.obs


def test_truncation_at_the_episode_cap_then_reset_step() -> None:
    with _env("freeway", n=2, seed=0, max_episode_frames=7) as env:  # freeway never ends early
        env.reset()
        results = [env.step(a) for a in _actions(env, 17)]
    trunc = [t for t, r in enumerate(results) if r.truncated.all()]
    resets = [t for t, r in enumerate(results) if r.reset_step.all()]
    assert trunc == [6, 14] and resets == [7, 15]
    assert not any(r.terminated.any() for r in results)


def test_sticky_actions_repeat_the_previous_action() -> None:
    """With probability 1 every action repeats the first one (NOOP): the game plays as if only
    NOOP were pressed; with probability 0 the chosen actions take effect."""
    def frames(sticky: float, actions: np.ndarray) -> np.ndarray:
        with _env("breakout", n=1, seed=5, sticky_action_prob=sticky, frame_stack=1,
                  full_action_space=True) as env:
            env.reset()
            return np.stack([env.step(a).obs for a in actions])

    moves = np.full((20, 1), 1)  # LEFT: the paddle moves
    noops = np.zeros((20, 1), np.int64)
    assert np.array_equal(frames(1.0, moves), frames(0.0, noops))
    assert not np.array_equal(frames(0.0, moves), frames(0.0, noops))
    # 0.1: the reference Environment with the same seed repeats exactly the same steps
    ref = minatar.Environment("breakout", sticky_action_prob=0.1)
    ref.seed(5)
    ref.reset()
    acts = np.random.default_rng(4).integers(0, 6, (60, 1))
    want = []
    for a in acts:
        ref.act(int(a[0]))
        want.append(ref.state().transpose(2, 0, 1))
        if ref.env.terminal:
            break
    got = frames(0.1, acts[: len(want)])
    assert np.array_equal(got[:, 0, 0], np.stack(want).astype(np.uint8))


def test_minimal_action_set_names_and_seeding() -> None:
    with _env("breakout", n=2, seed=7) as env:
        assert env.action_meanings == ("NOOP", "LEFT", "RIGHT")
        assert env.name == "minatar/breakout" and env.obs_dtype == np.uint8
        a = env.reset()
        acts = _actions(env, 30)
        run_a = [env.step(x).obs for x in acts]
        assert np.array_equal(env.reset(), a)  # same seed, same start
        assert all(np.array_equal(env.step(x).obs, o) for x, o in zip(acts, run_a))
        assert isinstance(env.step(acts[0]), StepResult)


@pytest.mark.parametrize("spelling,game", [
    ("minatar/breakout", "breakout"), ("MinAtar/SpaceInvaders", "space_invaders"),
    ("minatar/space-invaders", "space_invaders"), ("minatar/Seaquest", "seaquest")])
def test_game_spellings(spelling: str, game: str) -> None:
    assert minatar_game(spelling) == game


def test_unknown_game_is_one_line_listing_the_games() -> None:
    with pytest.raises(ConfigError, match="minatar/breakout, minatar/freeway") as err:
        _env("pong")
    assert "\n" not in str(err.value)
