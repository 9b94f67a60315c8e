"""MinAtar games (Young & Tian 2019) as a next-step-autoreset vector env.

`env.id` spells a game `minatar/<game>` with `<game>` one of `MINATAR_GAMES`
(`minatar/breakout`, `minatar/space_invaders`, ...; case, `-` and `_` are
ignored, so `MinAtar/SpaceInvaders` works too). The `minatar` package
(GPL-3.0) is an optional extra: `pip install -e ".[minatar]"`.

`MinAtarVectorEnv` steps N copies of `minatar.Environment` in a Python loop and
follows the same contract as ale-py's `AtariVectorEnv`, so that
`wnrl.envs.VecEnv` gives the usual `StepResult` and the frame-ring replay stores
each frame once:

- observation uint8[N, S, C, 10, 10]: the last S frames (`env.frame_stack`, 1 in
  the MinAtar paper), each the game's 10x10xC boolean grid moved channels-first
  as 0/1 bytes; a new episode's stack is zero-padded (S-1 zero frames, then the
  first frame) and each step shifts it by one frame;
- sticky actions are `minatar.Environment`'s own: with probability
  `env.sticky_action_prob` (0.1 in the paper) the previous action is repeated;
  its random state also drives the game, and env i is seeded with `seed + i`;
- actions index the minimal action set, or all 6 MinAtar actions with
  `env.full_action_space=true` (the MinAtar paper's DQN uses all 6);
- autoreset is next-step: the step that ends an episode returns its final frame
  and reward; the next one ignores its action and returns the new episode's
  first stack, reward 0, terminated = truncated = False;
- `terminated` is the game's own terminal; `truncated` is set when an episode
  reaches `max_episode_steps` steps without one (MinAtar has no lives).
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from wnrl.config import ConfigError

__all__ = ["ACTION_NAMES", "MINATAR_GAMES", "MinAtarVectorEnv", "is_minatar", "minatar_game"]

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")  # MinAtar's 'n l u r d f'
PREFIX = "minatar/"


def is_minatar(env_id: str) -> bool:
    """True for ids spelled `minatar/<anything>` (the game is checked by `minatar_game`)."""
    return env_id.strip().lower().startswith(PREFIX)


def minatar_game(env_id: str) -> str:
    """MinAtar module name for `minatar/SpaceInvaders`, `minatar/space-invaders`, ...

    Raises ConfigError (one line, listing the games) when the game is unknown."""
    key = re.sub(r"[\s_\-]", "", env_id.strip().lower().removeprefix(PREFIX))
    for game in MINATAR_GAMES:
        if game.replace("_", "") == key:
            return game
    raise ConfigError(f"env.id={env_id!r} is not a MinAtar game; allowed: "
                      + ", ".join(PREFIX + g for g in MINATAR_GAMES))


def _import_minatar() -> Any:
    try:
        import minatar
    except ImportError:
        raise ConfigError("MinAtar envs need the optional `minatar` package (GPL-3.0): "
                          'pip install -e ".[minatar]"') from None
    return minatar


class MinAtarVectorEnv(gym.vector.VectorEnv):
    """N MinAtar games stepped in order; see the module doc for the contract."""

    def __init__(self, game: str, num_envs: int, *, sticky_action_prob: float = 0.1,
                 frame_stack: int = 1, max_episode_steps: int = 108_000,
                 full_action_space: bool = False, difficulty_ramping: bool = True) -> None:
        minatar = _import_minatar()
        self.game = game
        self.num_envs = int(num_envs)
        self._games = [minatar.Environment(game, sticky_action_prob=sticky_action_prob,
                                           difficulty_ramping=difficulty_ramping)
                       for _ in range(self.num_envs)]
        first = self._games[0]
        self.action_set = (tuple(range(first.num_actions())) if full_action_space
                           else tuple(int(a) for a in first.minimal_action_set()))
        self.action_meanings = tuple(ACTION_NAMES[a] for a in self.action_set)
        h, w, c = first.state_shape()
        self.stack = int(frame_stack)
        self.max_episode_steps = int(max_episode_steps)
        self.single_observation_space = gym.spaces.Box(0, 1, (self.stack, c, h, w), np.uint8)
        self.single_action_space = gym.spaces.Discrete(len(self.action_set))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)
        self.action_space = gym.spaces.MultiDiscrete([len(self.action_set)] * self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self._obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.uint8)
        self._steps = np.zeros(self.num_envs, np.int64)
        self._done = np.zeros(self.num_envs, bool)

    def _frame(self, i: int) -> np.ndarray:
        """uint8[C, 10, 10]: game i's current grid, channels first."""
        return np.ascontiguousarray(self._games[i].state().transpose(2, 0, 1), dtype=np.uint8)

    def _start(self, i: int) -> None:
        self._games[i].reset()
        self._obs[i] = 0
        self._obs[i, -1] = self._frame(i)
        self._steps[i] = 0
        self._done[i] = False

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every game. With a seed, game i is seeded with `seed + i` and its sticky
        previous action set back to NOOP, so it replays as a fresh `minatar.Environment`;
        autoresets (like MinAtar's own) keep the previous action across episodes."""
        for i, g in enumerate(self._games):
            if seed is not None:
                g.seed(int(seed) + i)
                g.last_action = 0
            self._start(i)
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict[str, Any]]:
        """actions int[N] (indices into `action_set`) -> (obs uint8[N, S, C, 10, 10],
        reward float32[N], terminated bool[N], truncated bool[N], {})."""
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        for i, g in enumerate(self._games):
            if self._done[i]:  # next-step autoreset: the action is ignored
                self._start(i)
                continue
            r, term = g.act(self.action_set[int(actions[i])])
            self._steps[i] += 1
            self._obs[i, :-1] = self._obs[i, 1:]
            self._obs[i, -1] = self._frame(i)
            reward[i], terminated[i] = r, bool(term)
            truncated[i] = not term and self._steps[i] >= self.max_episode_steps
            self._done[i] = terminated[i] or truncated[i]
        return self._obs.copy(), reward, terminated, truncated, {}

    def close(self, **kwargs: Any) -> None:
        self._games = []
