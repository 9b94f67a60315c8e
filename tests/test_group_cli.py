"""A group through the command line: run directories, resume, Ctrl-C, evaluation and the
run report of a member, and the one-line refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wnrl import checkpoint as ckpt
from wnrl.cli import evaluate_main, train_main
from wnrl.config import from_dict

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _args(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "cartpole_wn_dqn.yaml"), f"train.runs_dir={tmp}",
            f"train.run_name={name}", "train.noise_period=0", "train.total_steps=1600",
            "train.learning_starts=400", "train.checkpoint_period=800",
            "train.keep_checkpoints=5", "learner.batch_size=16", "replay.capacity=4000",
            "learner.target_update_period=50", "replay.save_in_checkpoint=true",
            "train.exact_resume=true", *extra]


def test_each_member_is_a_run_directory_and_the_group_resumes_exactly(tmp_path: Path,
                                                                       capsys) -> None:
    full = tmp_path / "full"
    assert train_main(_args(full, "g", "--seeds", "3-4", "learner.lr=[1e-3,3e-4]")) == 0
    names = ["g_s3_lr0.001", "g_s3_lr0.0003", "g_s4_lr0.001", "g_s4_lr0.0003"]
    assert sorted(p.name for p in full.iterdir()) == sorted(names)
    for name in names:
        run = full / name
        assert json.loads((run / "group.json").read_text())["members"] == names
        assert list(run.glob("events.out.tfevents.*")) and (run / "wnrl.lock").exists()
        cfg = from_dict(ckpt.load_latest_valid(run)[1]["config"])
        seed, lr = int(name.split("_s")[1][0]), float(name.split("_lr")[1])
        assert (cfg.seed, cfg.learner.lr, cfg.train.seeds, cfg.train.run_name) == \
            (seed, lr, (), name)
        assert f"seed: {seed}" in (run / "config.yaml").read_text()
    # a finished group resumes to one line per member and writes nothing
    def written() -> dict[Path, int]:  # the lock is taken (and its holder noted) regardless
        return {p: p.stat().st_mtime_ns for p in full.rglob("*")
                if p.is_file() and p.name != "wnrl.lock"}

    files = written()
    capsys.readouterr()
    assert train_main(["--resume", str(full / names[1])]) == 0
    assert capsys.readouterr().out.count("is finished: it reached train.total_steps=1600") == 4
    assert written() == files
    # the group as it was at step 800, resumed from one member's directory
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for name in names:
        for p in ckpt.list_checkpoints(part / name / "checkpoints"):
            if ckpt.load(p)["env_steps"] > 800:
                p.unlink()
    capsys.readouterr()
    assert train_main(["--resume", str(part / names[2])]) == 0
    assert capsys.readouterr().out.count("at env step 800 (group of 4)") == 4
    for name in names:
        a = ckpt.load_latest_valid(full / name)[1]
        b = ckpt.load_latest_valid(part / name)[1]
        assert a["env_steps"] == b["env_steps"] == 1600
        for key, w in a["learner"]["online"].items():
            assert torch.equal(w, b["learner"]["online"][key]), (name, key)


def test_a_members_run_is_scored_and_reported(tmp_path: Path, capsys) -> None:
    assert train_main(_args(tmp_path, "g", "--seeds", "0,2", "train.total_steps=800")) == 0
    member = tmp_path / "g_s2"
    assert evaluate_main([str(member), "--episodes", "2", "--json",
                          str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["episodes"] == 2
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_report.py"),
                          str(member), str(tmp_path / "g_s0"), "--png", str(tmp_path / "r.png"),
                          "--bin", "400"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "g_s2" in res.stdout and (tmp_path / "r.png").is_file()


def test_ctrl_c_checkpoints_every_member(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"),
                             *_args(tmp_path, "g", "--seeds", "0-2",
                                    "train.total_steps=10000000", "train.exact_resume=false",
                                    "replay.save_in_checkpoint=false")],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    runs = [tmp_path / f"g_s{s}" for s in range(3)]
    t0 = time.time()
    while not all(ckpt.list_checkpoints(r / "checkpoints") for r in runs):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 180
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    steps = {ckpt.load_latest_valid(r)[1]["env_steps"] for r in runs}
    assert len(steps) == 1 and steps.pop() > 800  # every member saved at the stop step
    for r in runs:
        assert f"--resume {r}" in out + err


@pytest.mark.parametrize("extra, fragments", [
    (["--seeds", "0-1", "train.mode=async"], ["train.mode=async", "group"]),
    (["--seeds", "0-1", "distributed.enabled=true"], ["distributed.enabled", "group"]),
    (["--seeds", "0-1", "train.stop_return=100"], ["train.stop_return", "group"]),
    (["--seeds", "2-1"], ["--seeds", "range"]),
    (["learner.lr=[0.1,-1]"], ["learner.lr", "rates > 0"]),
    (["train.seeds=[1,1]"], ["train.seeds", "distinct"]),
])
def test_refusals_are_one_line_with_exit_code_2(tmp_path: Path, capsys, extra: list[str],
                                                fragments: list[str]) -> None:
    assert train_main(_args(tmp_path, "g", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(f in err[0] for f in fragments), err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_diverging_member_stops_the_group_and_the_others_are_saved(
        tmp_path: Path, capsys, monkeypatch) -> None:
    from wnrl.group.learner import GroupLearner

    real = GroupLearner.update

    def update(self: GroupLearner, batches: list) -> list:
        metrics = real(self, batches)
        if self.num_updates == 100:
            metrics[1] = dataclasses.replace(metrics[1], loss=float("nan"))
        return metrics

    monkeypatch.setattr(GroupLearner, "update", update)
    assert train_main(_args(tmp_path, "g", "--seeds", "0-2")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "g_s1: non-finite loss" in err[0], err
    saved = {s: [ckpt.load(p)["env_steps"] for p in ckpt.list_checkpoints(
        tmp_path / f"g_s{s}" / "checkpoints")] for s in range(3)}
    assert saved[1] == []  # the diverged member writes nothing
    assert saved[0] == saved[2] and saved[0] and max(saved[0]) < 1600
