"""One Atari game on `ale_py.ALEInterface` with `AtariVectorEnv`'s protocol, and its RGB screen.

ale-py's vector env (what wnrl trains and scores with, `wnrl.envs`) returns only
the processed observation (84x84 grayscale stacks); it has one image format per
env, so it cannot give the agent its grayscale view and a person the RGB
screen of the same game. `ScreenEnv` plays one game in one emulator and gives
both: the agent acts on `obs` and the video shows `screen()` / `StepOut.frames`,
the RGB screens of that same emulator.

Its observations, rewards and flags are byte-identical to env 0 of an
`AtariVectorEnv` built by `wnrl.envs.atari_options` from the same `EnvConfig`
and seed (`tests/test_screen_env.py` checks this over whole games, sticky
actions and no-ops included), because it does what ale-py 0.12's C++
`PreprocessedEnv` does, step by step:

- Seeding: the ALE's `random_seed` is `seed` (sticky actions draw from the
  ALE's own RNG), and the no-op count comes from a `std::mt19937` seeded with
  `seed` (NumPy's MT19937 with its legacy seeding is the same generator), drawn
  as libstdc++'s `uniform_int_distribution(0, noop_max - 1)` does.
- Reset: `reset_game`, then 0..noop_max-1 NOOP frames (uniform, zero included;
  a game over during them resets the game). These frames do not count toward
  the frame cap. The first frame is the grayscale screen max-pooled with a zero
  frame; the stack is zero-padded (zeros, then that frame).
- Step: the action is repeated for `frame_skip` emulator frames (sticky inside
  the ALE). The loop stops at game over or when the episode's frames reach
  `max_episode_frames`, even in the middle of a skip. The grayscale screens of
  the last two frames that did not end the episode are max-pooled, resized to
  84x84 with OpenCV's INTER_AREA (`area_resize`, the same float32 arithmetic),
  and pushed on the stack.

One env, no autoreset: after `terminated` or `truncated`, call `reset()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import ale_py
import numpy as np
from ale_py import roms

from wnrl.config import EnvConfig
from wnrl.envs import resolve_game

__all__ = ["ScreenEnv", "StepOut", "area_resize"]

OBS_SIZE = 84  # what wnrl.envs.atari_options asks of the vector env


@dataclass(frozen=True)
class StepOut:
    """One agent step.

    obs:        uint8[S, 84, 84]  the agent's next observation
    reward:     float             raw game score of the step's frames
    terminated: bool              game over
    truncated:  bool              frame cap reached (and not game over)
    frames:     tuple of uint8[210, 160, 3]  the RGB screen after each emulator frame of the
                step (empty unless the env was built with `rgb=True`)
    """

    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    frames: tuple[np.ndarray, ...]


def _area_table(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's `computeResizeAreaTab` for a non-integer scale: for each output pixel, the
    source indices int64[dst, K] and float32 weights [dst, K] (zero-padded), in OpenCV's order."""
    scale = src / dst
    rows: list[list[tuple[int, float]]] = []
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s2 = min(int(np.floor(f2)), src - 1)
        s1 = min(int(np.ceil(f1)), s2)
        row = []
        if s1 - f1 > 1e-3:
            row.append((s1 - 1, (s1 - f1) / cell))
        row += [(s, 1.0 / cell) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            row.append((s2, min(min(f2 - s2, 1.0), cell) / cell))
        rows.append(row)
    k = max(len(r) for r in rows)
    index = np.zeros((dst, k), np.int64)
    weight = np.zeros((dst, k), np.float32)
    for d, row in enumerate(rows):
        for j, (s, w) in enumerate(row):
            index[d, j], weight[d, j] = s, np.float32(w)
    return index, weight


_TABLES: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def area_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """`cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)` for uint8[H, W] and
    non-integer scale factors (210x160 -> 84x84): area weights summed in float32, first along
    rows then columns, rounded half to even. Returns uint8[height, width]."""
    h, w = img.shape
    if h < height or w < width or (h % height == 0 and w % width == 0):
        raise ValueError(f"area_resize covers shrinking by a non-integer factor only, got "
                         f"{h}x{w} -> {height}x{width}")
    for key in ((w, width), (h, height)):
        if key not in _TABLES:
            _TABLES[key] = _area_table(*key)
    xi, xw = _TABLES[(w, width)]
    yi, yw = _TABLES[(h, height)]
    src = img.astype(np.float32)
    rows = np.zeros((h, width), np.float32)
    for j in range(xi.shape[1]):
        rows += src[:, xi[:, j]] * xw[:, j]
    out = np.zeros((height, width), np.float32)
    for j in range(yi.shape[1]):
        out += rows[yi[:, j], :] * yw[:, j, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _uniform_below(gen: np.random.MT19937, n: int) -> int:
    """libstdc++'s `uniform_int_distribution(0, n - 1)` on a 32-bit generator (Lemire's
    nearly divisionless method): one draw, a second only in the rare rejection case."""
    n = max(n, 1)
    product = int(gen.random_raw()) * n
    if product & 0xFFFFFFFF < n:
        threshold = (2**32 - n) % n
        while product & 0xFFFFFFFF < threshold:
            product = int(gen.random_raw()) * n
    return product >> 32


class ScreenEnv:
    """One game of `cfg.id` with the evaluation protocol (no life-loss terminals, raw rewards).

    Args:
        cfg: the env config the agent was trained and scored with (sticky actions, frame
            skip, frame stack, no-ops, action set).
        seed: int32 seed, as env 0 of a vector env reset with this seed.
        max_episode_frames: the frame cap (the evaluation config's).
        rgb: keep the RGB screen of every emulator frame in `StepOut.frames`.
    Attributes: `num_envs` (1), `num_actions`, `action_meanings`, `obs_shape` (S, 84, 84).
    """

    def __init__(self, cfg: EnvConfig, *, seed: int, max_episode_frames: int,
                 rgb: bool = False) -> None:
        if not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        self.cfg, self.seed, self.rgb = cfg, seed, rgb
        self.max_episode_frames = int(max_episode_frames)
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", float(cfg.sticky_action_prob))
        self.ale.setInt("random_seed", int(seed))
        self.ale.loadROM(str(roms.get_rom_path(resolve_game(cfg.id))))
        self.actions = (self.ale.getLegalActionSet() if cfg.full_action_space
                        else self.ale.getMinimalActionSet())
        self.num_envs = 1
        self.num_actions = len(self.actions)
        self.action_meanings = tuple(a.name for a in self.actions)
        self.obs_shape = (cfg.frame_stack, OBS_SIZE, OBS_SIZE)
        self._noop_rng = np.random.MT19937()
        self._noop_rng._legacy_seeding(int(seed))  # = std::mt19937(seed)
        self._raw = [np.zeros((210, 160), np.uint8), np.zeros((210, 160), np.uint8)]
        self._stack = np.zeros(self.obs_shape, np.uint8)
        self._frames = 0  # emulator frames of agent steps in this episode
        self._over = True

    def screen(self) -> np.ndarray:
        """uint8[210, 160, 3]: the RGB screen now."""
        return self.ale.getScreenRGB()

    def _push(self) -> np.ndarray:
        pooled = np.maximum(self._raw[0], self._raw[1])
        self._raw[0] = pooled  # the C++ env pools in place
        self._stack = np.concatenate([self._stack[1:],
                                      area_resize(pooled, OBS_SIZE, OBS_SIZE)[None]])
        return self._stack.copy()

    def reset(self) -> np.ndarray:
        """Start a new game (no-ops included); returns the first observation uint8[S, 84, 84]."""
        self.ale.reset_game()
        for _ in range(_uniform_below(self._noop_rng, self.cfg.noop_max)):
            self.ale.act(ale_py.Action.NOOP)
            if self.ale.game_over():
                self.ale.reset_game()
        self._raw = [self.ale.getScreenGrayscale(), np.zeros((210, 160), np.uint8)]
        self._stack = np.zeros(self.obs_shape, np.uint8)
        self._frames, self._over = 0, False
        return self._push()

    def step(self, action: int) -> StepOut:
        """Play `action` (an index into the action set) for one agent step."""
        if self._over:
            raise RuntimeError("ScreenEnv.step after the game ended: call reset()")
        act = self.actions[int(action)]
        reward, over, frames = 0, False, []
        for left in range(self.cfg.frame_skip, 0, -1):
            reward += self.ale.act(act)
            over = self.ale.game_over()
            self._frames += 1
            if self.rgb:
                frames.append(self.ale.getScreenRGB())
            if over or self._frames >= self.max_episode_frames:
                break
            if left <= 2:
                self._raw[left - 1] = self.ale.getScreenGrayscale()
        truncated = self._frames >= self.max_episode_frames and not over
        self._over = over or truncated
        return StepOut(self._push(), float(reward), over, truncated, tuple(frames))
