"""Vector environments: Atari (ale-py's C++ `AtariVectorEnv`) and classic control.

`make_env(cfg, seed=...)` returns a `VecEnv` whose `step` gives a `StepResult`
with the same meaning for every env kind. The actor forms a transition as
`(obs_t, action_t, reward, terminated | (life_lost & terminal_on_life_loss),
truncated, valid=~reset_step)`; clipping rewards is the actor's job (rewards
here are raw game scores).

Atari protocol (Machado et al. 2018, all options set explicitly from
`EnvConfig`): sticky actions, minimal action set, 84x84 grayscale, frame skip
with max-pool over the last two frames, frame stack, episodes capped at
`max_episode_frames` emulator frames. At reset ale-py plays a number of NOOP
frames drawn uniformly from 0..noop_max-1, zero included (0..29 for
`noop_max=30`). Baselines', CleanRL's and SB3's `NoopResetEnv` draw 1..noop_max
frames instead. FIRE is *not* pressed at reset (`use_fire_reset=False`):
Machado et al. leave it to the agent.
The env never clips rewards and never ends an episode at a life loss
(`reward_clipping=False, episodic_life=False, life_loss_info=False`), so its
`terminated` always means game over; `life_lost` is computed here from
`info["lives"]` decreasing (training envs only; evaluation envs report False).

Facts about `AtariVectorEnv` (ale-py 0.12.1), verified by experiment and by
`tests/test_envs.py`:

- Autoreset is next-step: the step that ends an episode (terminated or
  truncated) returns that episode's real final observation and final reward.
  The *next* step ignores its action, returns reward 0, terminated = truncated
  = False, the new episode's lives, and the new episode's first observation.
- A new episode's stack (from `reset` or an autoreset step) is zero-padded:
  frames 0..stack-2 are all zeros, the last is the first real frame; each later
  step shifts the stack by one (`obs[t+1][:-1] == obs[t][1:]`).
- `max_num_frames_per_episode` counts the emulator frames of agent steps; the
  no-op frames at reset do not count. It truncates exactly there, even in the
  middle of a frame skip, so 108,000 frames at frame skip 4 are 27,000 agent
  steps.
- With `life_loss_info=False` lives fall (Breakout 5 -> 0) with no flag;
  `terminated` comes with lives == 0. Games without lives (Pong) report 0.
- Rewards are int32 game-score deltas (Space Invaders gives 5, 10, ...); obs is
  a fresh uint8 array each step (never overwritten by a later step).
- `reset(seed=s)` seeds env i with s + i: the same seed replays the same
  no-ops, sticky actions and observations.

Classic control (any gymnasium id that is not an Atari game, e.g. CartPole-v1)
uses `gymnasium.make_vec(..., vectorization_mode="sync")` with next-step
autoreset, which behaves as above (reset step: reward 0, flags False);
observations are float32[N, D], `life_lost` is always False, sticky actions,
frame skip and stacking do not apply, and the episode cap is the env's own time
limit or `max_episode_frames` steps, whichever is shorter.

MinAtar (`minatar/breakout`, ... ; the optional `minatar` package) goes through
`wnrl.minatar_env.MinAtarVectorEnv`, which keeps the Atari contract above:
observations uint8[N, S, C, 10, 10] (S = `frame_stack`, zero-padded at a new
episode; values 0/1), the game's own sticky actions, frames == env steps,
`max_episode_frames` caps episodes in steps, no lives.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from ale_py import roms
from gymnasium.vector import AutoresetMode

from wnrl.config import ConfigError, EnvConfig
from wnrl.minatar_env import PREFIX, MinAtarVectorEnv, is_minatar, minatar_game

__all__ = [
    "HUMAN_RANDOM_SCORES",
    "StepResult",
    "VecEnv",
    "human_normalized",
    "is_atari",
    "make_env",
    "resolve_game",
]

# (random, human) scores on Atari-57, 30 no-op starts, 108k-frame cap: the values of
# DQN Zoo (dqn_zoo/atari_data.py) and CleanRL, from Mnih et al. 2015 / Wang et al. 2016.
# The Agent57 table (Badia et al. 2020) has the same values except Video Pinball's
# random score, 0.0 there and 16,256.9 here.
HUMAN_RANDOM_SCORES: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7), "amidar": (5.8, 1719.5), "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3), "asteroids": (719.1, 47388.7),
    "atlantis": (12850.0, 29028.1), "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5), "beam_rider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4), "bowling": (23.1, 160.7), "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5), "centipede": (2090.9, 12017.0),
    "chopper_command": (811.0, 7387.8), "crazy_climber": (10780.5, 35829.4),
    "defender": (2874.5, 18688.9), "demon_attack": (152.1, 1971.0),
    "double_dunk": (-18.6, -16.4), "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7), "freeway": (0.0, 29.6), "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5), "gravitar": (173.0, 3351.4), "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9), "jamesbond": (29.0, 302.8), "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5), "kung_fu_master": (258.5, 22736.3),
    "montezuma_revenge": (0.0, 4753.3), "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0), "phoenix": (761.4, 7242.6),
    "pitfall": (-229.4, 6463.7), "pong": (-20.7, 14.6), "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0), "riverraid": (1338.5, 17118.0),
    "road_runner": (11.5, 7845.0), "robotank": (2.2, 11.9), "seaquest": (68.4, 42054.7),
    "skiing": (-17098.1, -4336.9), "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7), "star_gunner": (664.0, 10250.0),
    "surround": (-10.0, 6.5), "tennis": (-23.8, -8.3), "time_pilot": (3568.0, 5229.2),
    "tutankham": (11.4, 167.6), "up_n_down": (533.4, 11693.2), "venture": (0.0, 1187.5),
    "video_pinball": (16256.9, 17667.9), "wizard_of_wor": (563.5, 4756.5),
    "yars_revenge": (3092.9, 54576.9), "zaxxon": (32.5, 9173.3),
}


def human_normalized(game: str, score: float) -> float | None:
    """(score - random) / (human - random), or None when the game has no published scores."""
    rom = _rom_lookup().get(_normalize(game), game)
    if rom not in HUMAN_RANDOM_SCORES:
        return None
    rand, human = HUMAN_RANDOM_SCORES[rom]
    return (score - rand) / (human - rand)


# ----------------------------------------------------------------------------- game names

_ROMS: dict[str, str] | None = None


def _rom_lookup() -> dict[str, str]:
    """Normalized name (lowercase, no '_') -> ALE rom id, for every installed ROM."""
    global _ROMS
    if _ROMS is None:
        _ROMS = {rom.replace("_", ""): rom for rom in roms.get_all_rom_ids()}
    return _ROMS


def _normalize(name: str) -> str:
    """'ALE/SpaceInvaders-v5', 'SpaceInvadersNoFrameskip-v4', 'space_invaders' ->
    'spaceinvaders'."""
    key = name.strip().lower()
    key = key.removeprefix("ale/")
    key = re.sub(r"-v\d+$", "", key)
    key = re.sub(r"(noframeskip|deterministic)$", "", key)
    return re.sub(r"[\s_\-]", "", key)


def is_atari(name: str) -> bool:
    """True when `name` (any accepted spelling) is an installed Atari ROM."""
    return _normalize(name) in _rom_lookup()


def resolve_game(name: str) -> str:
    """ALE rom id for `pong`, `Pong`, `ALE/Pong-v5` or `PongNoFrameskip-v4`.

    Raises ConfigError (one line, naming the closest installed ROMs) when unknown."""
    rom = _rom_lookup().get(_normalize(name))
    if rom is None:
        close = difflib.get_close_matches(_normalize(name), list(_rom_lookup()), n=3, cutoff=0.5)
        hint = ", ".join(_rom_lookup()[c] for c in close) or "see ale_py.roms.get_all_rom_ids()"
        raise ConfigError(f"env.id={name!r} is not an installed Atari ROM or gymnasium env id; "
                          f"closest ROMs: {hint}")
    return rom


# ----------------------------------------------------------------------------- vector env

@dataclass(frozen=True)
class StepResult:
    """One vector step of N envs.

    obs:        uint8[N, S, 84, 84] | uint8[N, S, C, 10, 10] (MinAtar) | float32[N, D]
    reward:     float32[N]  raw reward of this step (0 on reset steps)
    terminated: bool[N]     game over (not bootstrapped)
    truncated:  bool[N]     time limit reached (bootstrapped)
    life_lost:  bool[N]     lives decreased this step (training Atari envs only)
    reset_step: bool[N]     autoreset step: the action was ignored and `obs` is the first
                            observation of a new episode; never a transition
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_lost: np.ndarray
    reset_step: np.ndarray


class VecEnv:
    """N envs stepped together, in next-step autoreset mode, with `StepResult` semantics.

    Wraps any gymnasium-style vector env (`AtariVectorEnv` or a `SyncVectorEnv`).
    Attributes: `num_envs` N, `obs_shape` ((S, 84, 84) or (D,)), `obs_dtype` (uint8 or
    float32), `num_actions` A, `action_meanings` (A names, e.g. "NOOP"; indices for
    classic control), `frames_per_step`, `is_atari`, `name` (rom id or gymnasium id).
    """

    def __init__(self, env: gym.vector.VectorEnv, *, name: str, seed: int, is_atari: bool,
                 track_lives: bool, action_meanings: tuple[str, ...] = (),
                 frames_per_step: int = 1, obs_dtype: type | None = None) -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.NEXT_STEP:
            env.close()
            raise ValueError(f"{name}: expected next-step autoreset, got "
                             f"{env.metadata.get('autoreset_mode')}")
        if not isinstance(env.single_action_space, gym.spaces.Discrete):
            env.close()
            raise ConfigError(f"env.id={name!r} has a non-discrete action space "
                              f"({env.single_action_space}); DQN needs discrete actions")
        self._env = env
        self.name = name  # ALE rom id or gymnasium id
        self.seed = seed  # used by reset() when no seed is given
        self.num_envs: int = env.num_envs
        self.obs_shape: tuple[int, ...] = tuple(env.single_observation_space.shape)
        self.is_atari = is_atari
        self.obs_dtype = np.dtype(obs_dtype or (np.uint8 if is_atari else np.float32))
        self.num_actions: int = int(env.single_action_space.n)
        self.action_meanings = action_meanings or tuple(map(str, range(self.num_actions)))
        self.frames_per_step = frames_per_step  # emulator frames per env step (1 for classic)
        self._track_lives = track_lives
        self._lives = np.zeros(self.num_envs, np.int64)
        self._done = np.zeros(self.num_envs, bool)
        self._started = False

    def _as_obs(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=self.obs_dtype)

    def _lives_of(self, info: dict[str, Any]) -> np.ndarray:
        lives = info.get("lives")
        return np.zeros(self.num_envs, np.int64) if lives is None else np.asarray(lives, np.int64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs; env i is seeded with `seed + i` (default: the seed given at
        construction), so the same seed gives the same observations. Returns obs[N, ...]."""
        obs, info = self._env.reset(seed=self.seed if seed is None else int(seed))
        self._lives = self._lives_of(info)
        self._done[:] = False
        self._started = True
        return self._as_obs(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        """Step all envs with `actions: int64[N]` (ignored where the step is a reset step)."""
        if not self._started:
            raise RuntimeError("VecEnv.step called before reset")
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        obs, reward, terminated, truncated, info = self._env.step(actions)
        reset_step = self._done.copy()
        lives = self._lives_of(info)
        life_lost = (lives < self._lives) & ~reset_step if self._track_lives else \
            np.zeros(self.num_envs, bool)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        self._lives, self._done = lives, terminated | truncated
        return StepResult(obs=self._as_obs(obs), reward=np.asarray(reward, np.float32),
                          terminated=terminated, truncated=truncated,
                          life_lost=life_lost, reset_step=reset_step)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VecEnv({self.name!r}, num_envs={self.num_envs}, obs={self.obs_shape} "
                f"{self.obs_dtype}, actions={self.num_actions})")


# ----------------------------------------------------------------------------- factory

def _num_threads(requested: int, num_envs: int) -> int:
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(num_envs, cores or 1))


def atari_options(cfg: EnvConfig, *, num_envs: int, max_episode_frames: int) -> dict[str, Any]:
    """Every `AtariVectorEnv` keyword, set explicitly (its own defaults differ from ours)."""
    return dict(
        num_envs=num_envs,
        batch_size=0,  # synchronous: every step returns all N envs, in order
        num_threads=_num_threads(cfg.num_threads, num_envs),
        thread_affinity_offset=-1,
        max_num_frames_per_episode=max_episode_frames,
        repeat_action_probability=cfg.sticky_action_prob,
        full_action_space=cfg.full_action_space,
        continuous=False,
        continuous_action_threshold=0.5,  # unused: discrete actions
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=84, img_width=84, grayscale=True,
        stack_num=cfg.frame_stack,
        frameskip=cfg.frame_skip,
        maxpool=True,
        noop_max=cfg.noop_max,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=False,
    )


def make_env(cfg: EnvConfig, *, seed: int, training: bool = True, num_envs: int | None = None,
             max_episode_frames: int | None = None) -> VecEnv:
    """Vector env for `cfg.id` (Atari game in any accepted spelling, `minatar/<game>`, or a
    gymnasium id).

    `num_envs` and `max_episode_frames` default to the config's (evaluation passes
    `EvalConfig`'s). `training=False` gives the evaluation env: same observation
    pipeline and sticky actions, whole games (`life_lost` always False).
    """
    n = cfg.num_envs if num_envs is None else int(num_envs)
    frames = cfg.max_episode_frames if max_episode_frames is None else int(max_episode_frames)
    if n < 1 or frames < 1:
        raise ConfigError(f"num_envs={n} and max_episode_frames={frames} must be >= 1")
    if is_minatar(cfg.id):
        menv = MinAtarVectorEnv(minatar_game(cfg.id), n, sticky_action_prob=cfg.sticky_action_prob,
                                frame_stack=cfg.frame_stack, max_episode_steps=frames,
                                full_action_space=cfg.full_action_space)
        return VecEnv(menv, name=PREFIX + menv.game, seed=seed, is_atari=False,
                      track_lives=False, action_meanings=menv.action_meanings,
                      obs_dtype=np.uint8)
    if is_atari(cfg.id):
        from ale_py.vector_env import AtariVectorEnv

        rom = resolve_game(cfg.id)
        opts = atari_options(cfg, num_envs=n, max_episode_frames=frames)
        env = AtariVectorEnv(rom, **opts)
        meanings = tuple(a.name for a in env.ale.get_action_set())
        return VecEnv(env, name=rom, seed=seed, is_atari=True, track_lives=training,
                      action_meanings=meanings, frames_per_step=cfg.frame_skip)
    if cfg.id not in gym.registry:
        resolve_game(cfg.id)  # raises the unknown-game error with suggestions
    spec_limit = gym.spec(cfg.id).max_episode_steps
    limit = min(frames, spec_limit if spec_limit is not None else math.inf)
    env = gym.make_vec(cfg.id, num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
                       max_episode_steps=int(limit))
    return VecEnv(env, name=cfg.id, seed=seed, is_atari=False, track_lives=False)
