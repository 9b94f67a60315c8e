"""Where a run's replay lives (`replay.device`): the choice, a whole run on a `DeviceReplay`
(on CPU tensors here; tests/test_replay_device.py runs the replay itself on CUDA too), its
exact resume, a resume that moves the replay, and the settings it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_resume import CARTPOLE, _latest, _overrides
from wnrl.config import ConfigError, ReplayConfig, load_config
from wnrl.logger import RunLogger
from wnrl.replay.buffer import ReplayBuffer
from wnrl.replay.device import DeviceReplay
from wnrl.replay.placement import HEADROOM, make_replay, replay_placement
from wnrl.training import Trainer, build
from wnrl.training.runner import resume_run, start_run

ATARI = ((4, 84, 84), np.uint8, 8)
CUDA = torch.device("cuda")


def test_auto_puts_the_replay_on_the_learner_only_on_cuda_when_it_fits(monkeypatch) -> None:
    cfg = ReplayConfig(capacity=1_000_000)
    need = DeviceReplay.bytes_needed(1_000_000, *ATARI)
    assert 7.0e9 < need < 7.2e9  # 1M Atari transitions: about 7 GB
    assert replay_placement(cfg, *ATARI, torch.device("cpu"))[0] == "host"
    monkeypatch.setattr("wnrl.replay.placement.free_bytes", lambda device: need + HEADROOM)
    assert replay_placement(cfg, *ATARI, CUDA) == ("learner", "replay.device=auto: the "
                                                   "learner is on cuda")
    monkeypatch.setattr("wnrl.replay.placement.free_bytes", lambda device: need + HEADROOM - 1)
    where, why = replay_placement(cfg, *ATARI, CUDA)
    assert where == "host" and "(6.6 GiB) does not fit" in why
    for device in ("host", "learner"):  # explicit settings are kept, wherever the learner is
        assert replay_placement(ReplayConfig(device=device), *ATARI, CUDA)[0] == device
    replay, note = make_replay(ReplayConfig(capacity=500, device="learner"), (4,), np.float32,
                               2, gamma=0.9, seed=1, learner_device=torch.device("cpu"))
    assert isinstance(replay, DeviceReplay) and note == "replay on cpu (replay.device=learner)"
    replay, note = make_replay(ReplayConfig(capacity=500), (4,), np.float32, 2, gamma=0.9,
                               seed=1, learner_device=torch.device("cpu"))
    assert isinstance(replay, ReplayBuffer) and "host memory" in note


def test_a_run_on_the_device_replay_resumes_bit_identically(tmp_path: Path, capsys) -> None:
    """Sync CartPole with replay.device=learner (a DeviceReplay of CPU tensors): stopped at
    env step 1000 and resumed, it ends with the weights and curves of the run that was not
    stopped; a replay saved from the host replay loads into the device one on resume."""
    from tests.test_async_loop import StopAfter
    from tests.test_train import _assert_same_weights, _scalars
    from wnrl.rundir import create_run_dir

    ov = _overrides(tmp_path, "full", **{"train.total_steps": 1600, "train.exact_resume": True,
                                         "train.checkpoint_period": 800,
                                         "replay.device": "learner"})
    assert start_run(CARTPOLE, ov, progress=False) == 0
    assert "replay on cpu (replay.device=learner)" in capsys.readouterr().out
    saved = _latest(tmp_path / "full")["replay"]
    assert saved["rng"].dtype == torch.uint8 and saved["frames"].shape[0] == 4
    cfg = load_config(CARTPOLE, ov + ["train.run_name=part"])
    run_dir, lock = create_run_dir(cfg)
    trainer = Trainer(cfg, run_dir, build(cfg))
    assert isinstance(trainer.parts.replay, DeviceReplay)
    trainer.log = RunLogger(run_dir, cfg.train.total_steps, progress=False)
    with lock:
        assert trainer.run(StopAfter(trainer, 1000)) == 130
    trainer.log.close()
    assert resume_run(str(run_dir), [], progress=False) == 0
    _assert_same_weights(_latest(tmp_path / "full"), _latest(run_dir))
    for tag in ("train/loss", "episode/return"):
        assert _scalars(tmp_path / "full", tag) == _scalars(run_dir, tag), tag
    # a host-replay run resumed with its replay moved to the learner's device
    host = _overrides(tmp_path, "moved", **{"train.total_steps": 800, "replay.device": "host"})
    assert start_run(CARTPOLE, host, progress=False) == 0
    assert isinstance(_latest(tmp_path / "moved")["replay"]["rng"], dict)
    capsys.readouterr()
    assert resume_run(str(tmp_path / "moved"), ["train.total_steps=1200",
                                                "replay.device=learner"], progress=False) == 0
    out = capsys.readouterr().out
    assert "replay on cpu (replay.device=learner)" in out and "refilling" not in out
    assert _latest(tmp_path / "moved")["env_steps"] == 1200


@pytest.mark.parametrize("overrides, says", [
    (["replay.device=gpu"], "replay.device='gpu' is invalid: must be one of auto, host, learner"),
    (["replay.device=learner", "distributed.enabled=true"], "replay.device='learner' is "
     "invalid: must be host or auto with distributed.enabled=true"),
])
def test_refused_settings_name_the_key(overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load_config(CARTPOLE, overrides)


def test_a_group_refuses_the_device_replay(tmp_path: Path, capsys) -> None:
    from wnrl.cli import train_main

    code = train_main(["--config", CARTPOLE, "--seeds", "0,1", "replay.device=learner",
                       f"train.runs_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "replay.device=learner cannot train a group" in err[0]
    assert not any(tmp_path.iterdir())
