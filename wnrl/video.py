"""Film one evaluation game: the game as a person sees it, or the agent's view.

    res = record_game(net, cfg, "pong.mp4", env_seed=..., actor_seed=..., epsilon=0.001)

The game is played on a `ScreenEnv`. It has the exact protocol of the scored
vector env (sticky actions, frame skip, no-ops, frame cap, byte-identical
observations), and the agent acts with the same epsilon-greedy `Actor`. The
frames come from the emulator the agent acts in. The filmed game is one more
game, not one of the scored ones; its score is reported with the video.

Views:
- `game` (default): the emulator's RGB screen, 210x160, times `scale`.
- `agent`: what the network sees, the newest 84x84 grayscale frame of its
  stack, upscaled 4x (times `scale`).

Formats, by the file's suffix:
- `.mp4` (libx264 through imageio-ffmpeg): in the game view every emulator
  frame at 60 fps, the Atari's own rate; in the agent view one frame per agent
  step at 60 / frame_skip fps. Both play in real time.
- `.gif` (Pillow): one frame per agent step at 60 / frame_skip fps (15 fps
  at frame skip 4; GIF delays come in 1/100 s, so 70 ms a frame, 5% slow).
  Pillow merges identical consecutive frames into one longer frame. For the
  README use `max_frames` to keep the file small: 400 frames are 28 s.

`max_frames` stops the game once that many frames are written. The video
then holds the game's start, and its score is marked partial.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import nn

from wnrl import atomic
from wnrl.actor import Actor
from wnrl.config import ActorConfig, Config, ConfigError
from wnrl.screen_env import ScreenEnv

__all__ = ["FORMATS", "VIEWS", "VideoResult", "record_game", "video_format"]

VIEWS = ("game", "agent")
FORMATS = (".mp4", ".gif")
ATARI_FPS = 60  # NTSC frames per second
AGENT_VIEW_UPSCALE = 4


@dataclass(frozen=True)
class VideoResult:
    """What was filmed: the file, its frames and the game's raw score and length (agent steps).

    `complete` is False when `max_frames` stopped the game before it ended (the score is
    then the partial score at that point)."""

    path: str
    view: str
    frames: int
    fps: float
    width: int
    height: int
    bytes: int
    env_seed: int
    score: float
    length: int
    complete: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        score = f"{self.score:g}" + ("" if self.complete else " (partial)")
        return (f"video: {self.path} ({self.view} view, {self.width}x{self.height}, "
                f"{self.frames} frames at {self.fps:g} fps, {self.bytes / 1e6:.2f} MB); "
                f"that game scored {score} in {self.length} steps")


def video_format(path: str | Path) -> str:
    """The file's suffix if it is a format we write (`.mp4`, `.gif`); ConfigError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--video {path}: the file must end in {' or '.join(FORMATS)}")
    return suffix


class _Writer:
    """Frames to an MP4 (streamed to ffmpeg) or a GIF (kept, written at the end)."""

    def __init__(self, path: Path, fmt: str, fps: float) -> None:
        import imageio.v2 as imageio

        self.path, self.fmt, self.fps, self.count = path, fmt, fps, 0
        self.shape: tuple[int, ...] = ()
        self._gif: list[np.ndarray] = []
        self._mp4 = imageio.get_writer(str(path), fps=fps, codec="libx264",
                                       macro_block_size=1) if fmt == ".mp4" else None

    def add(self, frame: np.ndarray) -> None:
        self.shape = frame.shape
        self.count += 1
        if self._mp4 is not None:
            self._mp4.append_data(frame)
        else:
            self._gif.append(frame)

    def close(self) -> None:
        if self._mp4 is not None:
            self._mp4.close()
        elif self._gif:
            import imageio.v3 as iio

            delay_ms = 10 * round(100 / self.fps)  # GIF delays are whole 1/100 s: 70 ms
            iio.imwrite(self.path, np.stack(self._gif), extension=".gif", duration=delay_ms,
                        loop=0)


def _upscale(frame: np.ndarray, k: int) -> np.ndarray:
    return frame if k == 1 else np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def record_game(net: nn.Module, cfg: Config, path: str | Path, *, env_seed: int,
                actor_seed: int, epsilon: float, view: str = "game",
                max_frames: int | None = None, scale: int = 1) -> VideoResult:
    """Play one game of `cfg.env` with `net` (epsilon-greedy, WN folded) and film it.

    Args:
        net: the Q-network (as `wnrl.evaluate.load_policy` returns it).
        cfg: the run's config; `cfg.env` and `cfg.eval.max_episode_frames` set the protocol.
        path: `.mp4` or `.gif` file to write (its folder is created).
        env_seed: the game's seed (env 0 of a vector env reset with it plays the same game
            start); actor_seed: the exploration RNG's.
        epsilon: exploration rate (evaluation: 0.001).
        view: `game` (RGB screen) or `agent` (84x84 grayscale input); see the module doc.
        max_frames: stop after writing this many frames (None: the whole game).
        scale: integer upscale of every frame (nearest neighbour).
    """
    fmt = video_format(path)
    if view not in VIEWS:
        raise ConfigError(f"--video-view must be one of {', '.join(VIEWS)}, got {view!r}")
    if scale < 1 or (max_frames is not None and max_frames < 1):
        raise ConfigError(f"--video-scale ({scale}) and --video-max-frames ({max_frames}) "
                          f"must be >= 1")
    every_frame = view == "game" and fmt == ".mp4"
    fps = ATARI_FPS if every_frame else ATARI_FPS / cfg.env.frame_skip
    env = ScreenEnv(cfg.env, seed=env_seed, max_episode_frames=cfg.eval.max_episode_frames,
                    rgb=view == "game")
    actor = Actor(env, net, ActorConfig(fixed_epsilons=(epsilon,)), total_steps=1,
                  clip_rewards=False, terminal_on_life_loss=False, seed=actor_seed)
    up = scale * (AGENT_VIEW_UPSCALE if view == "agent" else 1)
    limit = max_frames if max_frames is not None else np.inf
    score, length, done = 0.0, 0, False
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path, keep_suffix=True) as tmp:  # a reader never sees half a video
        writer = _Writer(tmp, fmt, fps)

        def show(obs: np.ndarray, frames: tuple[np.ndarray, ...]) -> None:
            if view == "agent":
                picked: tuple[np.ndarray, ...] = (obs[-1],)
            else:
                picked = frames if every_frame else frames[-1:]
            for f in picked:
                if writer.count < limit:
                    writer.add(_upscale(f, up))

        try:
            obs = env.reset()
            show(obs, (env.screen(),))
            while not done and writer.count < limit:
                action = actor.act(obs[None], actor.epsilons())[0]
                out = env.step(int(action))
                score, length, obs = score + out.reward, length + 1, out.obs
                done = out.terminated or out.truncated
                show(obs, out.frames)
        finally:
            writer.close()
    height, width = writer.shape[:2]
    return VideoResult(path=str(path), view=view, frames=writer.count, fps=fps, width=width,
                       height=height, bytes=Path(path).stat().st_size, env_seed=env_seed,
                       score=score, length=length, complete=done)
