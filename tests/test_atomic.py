"""The one atomic-write routine: every step can fail, and none leaves half a file or a
temporary file behind; checkpoints, config.yaml and evaluation JSON go through it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from wnrl import atomic
from wnrl import checkpoint as ckpt


def _boom(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


def test_write_replaces_durably_with_normal_permissions(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_file, real_dir = atomic.fsync_file, atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_file", lambda p: (synced.append("file"), real_file(p)))
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (synced.append(f"dir {p}"), real_dir(p)))
    path = tmp_path / "sub" / "out.json"
    assert atomic.write_text(path, '{"a": 1}') == 8
    assert atomic.write_bytes(path, b"\x00\x01\x02") == 3
    assert path.read_bytes() == b"\x00\x01\x02"
    assert synced == ["file", f"dir {path.parent}"] * 2
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


@pytest.mark.parametrize("step", ["write", "fsync_file", "rename", "fsync_dir"])
def test_failure_at_each_step(tmp_path: Path, monkeypatch, step: str) -> None:
    path = tmp_path / "config.yaml"
    atomic.write_text(path, "old")
    if step == "fsync_file":
        monkeypatch.setattr(atomic, "fsync_file", _boom)
    elif step == "rename":
        monkeypatch.setattr(os, "replace", _boom)
    elif step == "fsync_dir":
        monkeypatch.setattr(atomic, "fsync_dir", _boom)
    with pytest.raises(OSError, match="No space"), atomic.atomic_path(path) as tmp:
        tmp.write_text("new, half")
        if step == "write":
            _boom()
    monkeypatch.undo()
    # before the rename the old file stands; a failed directory fsync leaves the new one
    assert path.read_text() == ("new, half" if step == "fsync_dir" else "old")
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left


def test_checkpoint_and_run_files_use_it(tmp_path: Path, monkeypatch) -> None:
    from wnrl.config import load_config
    from wnrl.rundir import create_run_dir

    written: list[str] = []
    real = atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (written.append("x"), real(p)))
    ckpt.save(tmp_path / "ckpt_000000000001.pt", {"w": torch.ones(3)})
    cfg = load_config(Path(__file__).parents[1] / "configs" / "cartpole_dqn.yaml",
                      [f"train.runs_dir={tmp_path}", "train.run_name=r"])
    run_dir, lock = create_run_dir(cfg)
    lock.release()
    assert len(written) == 2 and (run_dir / "config.yaml").is_file()


def test_evaluation_json_is_written_atomically(tmp_path: Path, monkeypatch) -> None:
    from wnrl import evaluate
    from wnrl.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / "cartpole_dqn.yaml", [])
    monkeypatch.setattr(evaluate, "load_policy",
                        lambda path, on_skip=None: (cfg, None, {"signature": {"obs_shape": [4]},
                                                  "env_steps": 7}))
    monkeypatch.setattr(evaluate, "evaluate_network",
                        lambda *a, **k: evaluate.EvalResult([1.0, 3.0], [10, 30], "CartPole-v1"))
    out = tmp_path / "scores.json"
    evaluate.evaluate_checkpoint("ckpt", episodes=2, json_path=str(out))
    first = out.read_text()
    assert json.loads(first)["mean"] == 2.0 and json.loads(first)["env_steps"] == 7
    monkeypatch.setattr(os, "replace", _boom)
    with pytest.raises(OSError):
        evaluate.evaluate_checkpoint("ckpt", episodes=2, json_path=str(out))
    assert out.read_text() == first and [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_video_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wnrl.config import load_config
    from wnrl.networks import make_q_network
    from wnrl.screen_env import ScreenEnv
    from wnrl.video import record_game

    cfg = load_config(Path(__file__).parents[1] / "configs" / "pong_wn_dqn.yaml")
    net = make_q_network((4, 84, 84), 6, norm="none")
    real_step, calls = ScreenEnv.step, []

    def failing_step(self, action):  # the emulator fails mid-game
        calls.append(action)
        if len(calls) > 3:
            raise RuntimeError("emulator died")
        return real_step(self, action)

    monkeypatch.setattr(ScreenEnv, "step", failing_step)
    with pytest.raises(RuntimeError):
        record_game(net, cfg, tmp_path / "v.mp4", env_seed=1, actor_seed=1, epsilon=0.0)
    assert not list(tmp_path.iterdir())  # neither a partial video nor a temporary file
    monkeypatch.setattr(ScreenEnv, "step", real_step)
    res = record_game(net, cfg, tmp_path / "v.mp4", env_seed=1, actor_seed=1, epsilon=0.0,
                      max_frames=20)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"] and res.frames == 20
    assert (tmp_path / "v.mp4").stat().st_size == res.bytes > 0
