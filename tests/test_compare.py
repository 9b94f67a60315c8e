"""scripts/compare.py end to end on a tiny budget, and the study's curve reading."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wnrl.study import env_tag, final_return, learning_curve, plan_runs

ROOT = Path(__file__).resolve().parents[1]


def load_compare():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_tag() -> None:
    assert env_tag("CartPole-v1") == "cartpole"
    assert env_tag("ALE/Pong-v5") == "pong" and env_tag("pong") == "pong"


def test_learning_curve_bins_and_fills() -> None:
    df = pd.DataFrame({"step": [10, 20, 91, 95], "tag": ["episode/return"] * 4,
                       "value": [1.0, 3.0, 10.0, 20.0]})
    curve = learning_curve(df, total_steps=100, points=4)
    np.testing.assert_allclose(curve, [2.0, 2.0, 2.0, 15.0])
    assert final_return(df, 100) == 15.0


def test_plan_runs_refuses_a_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no config"):
        plan_runs("CartPole-v1", ["nope"], [0], 100, ROOT / "configs", tmp_path)


def test_compare_end_to_end(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--env", "CartPole-v1", "--agents", "dqn", "bn_dqn", "--seeds", "1",
            "--steps", "600", "--configs-dir", str(ROOT / "configs"), "--runs-dir", str(runs),
            "--out", str(out), "--nice", "0", "--sweep-sizes", "8", "16",
            "--timing-repeats", "1", "--no-cnn-cost",
            "train.learning_starts=200", "train.noise_period=200", "train.log_period=100"]
    compare = load_compare()
    assert compare.main(argv) == 0
    d = out / "cartpole"
    assert (d / "figure.png").stat().st_size > 10_000
    doc = json.loads((d / "summary.json").read_text())
    agents = doc["agents"]
    assert set(agents) == {"dqn", "bn_dqn"}
    assert agents["dqn"]["noise"]["q_std"] == 0.0
    assert agents["bn_dqn"]["noise"]["q_std"] > 0.0
    assert agents["bn_dqn"]["noise"]["td_target_std"] == 0.0  # the target is in eval mode
    assert agents["dqn"]["update_cost"]["ratio"] == 1.0
    assert [r["batch_size"] for r in doc["bn_minibatch_sweep"]] == [8, 16]
    table = (d / "summary.md").read_text()
    assert "| bn_dqn | 1 |" in table and "compare.py --env CartPole-v1" in table
    # a second call trains nothing and reads the same runs
    mtime = (runs / "cartpole" / "dqn_s0").stat().st_mtime
    assert compare.main([*argv, "--no-train"]) == 0
    assert (runs / "cartpole" / "dqn_s0").stat().st_mtime == mtime
