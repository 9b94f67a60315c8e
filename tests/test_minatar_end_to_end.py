"""A few-thousand-step MinAtar run through the command line: train, TensorBoard, evaluate.

Skipped when the optional `minatar` package (GPL-3.0) is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("minatar")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from wnrl import checkpoint as ckpt  # noqa: E402

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)


def test_minatar_wn_dqn_trains_logs_and_evaluates(tmp_path: Path) -> None:
    res = _run("train.py", "--config", str(ROOT / "configs" / "minatar_wn_dqn.yaml"),
               "env.id=minatar/space_invaders", f"train.runs_dir={tmp_path}",
               "train.run_name=si", "train.total_steps=3000", "train.learning_starts=1000",
               "train.updates_per_step=0.25", "train.checkpoint_period=1500",
               "train.noise_period=2000", "train.log_period=500", "replay.capacity=5000")
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "si"
    names = [p.name for p in ckpt.list_checkpoints(run / "checkpoints")]
    assert names[-1] == ckpt.checkpoint_name(3000)
    _, state = ckpt.load_latest_valid(run)
    assert state["signature"]["obs_shape"] == [1, 6, 10, 10]
    assert state["signature"]["num_actions"] == 6 and state["signature"]["norm"] == "weight"
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ("episode/return", "train/loss", "train/q_mean", "noise/q_std"):
        assert tag in tags, (tag, sorted(tags))
    assert [e.value for e in ea.Scalars("noise/q_std")] == [0.0]  # WN: no batch dependence
    assert len(ea.Scalars("episode/return")) >= 10
    out = tmp_path / "scores.json"
    res = _run("evaluate.py", str(run / "checkpoints" / names[-1]), "--episodes", "3",
               "--json", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["episodes"] == 3 and len(scores["returns"]) == 3
    assert all(r >= 0 and r == int(r) for r in scores["returns"])  # +1 per alien shot
    assert scores["human_normalized"] is None  # no published human scores for MinAtar
