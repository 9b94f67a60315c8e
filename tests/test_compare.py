"""scripts/compare.py end to end on a tiny budget, and the study's curve reading."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wnrl.experiments.study import (
    StudyOptions,
    config_tag,
    env_tag,
    final_return,
    learning_curve,
    plan_runs,
)
from wnrl.experiments.study_games import (
    games_summary,
    mean_difference,
    normalize,
    plan_study,
    probability_of_improvement,
    stratified_iqm,
)
from wnrl.stats import prob_greater

ROOT = Path(__file__).resolve().parents[1]


def load_compare():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_tag() -> None:
    assert env_tag("CartPole-v1") == "cartpole"
    assert env_tag("ALE/Pong-v5") == "pong" and env_tag("pong") == "pong"
    assert env_tag("minatar/SpaceInvaders") == "minatar_space_invaders"
    assert config_tag("minatar/breakout") == "minatar" and config_tag("CartPole-v1") == "cartpole"


def test_plan_study_over_minatar_games_is_seed_major_with_one_config_per_agent(
        tmp_path: Path) -> None:
    opt = StudyOptions(env_id="minatar/breakout", agents=("dqn", "wn_dqn"), seeds=(0, 1),
                       total_steps=100, configs_dir=ROOT / "configs", runs_dir=tmp_path,
                       overrides=("train.log_period=10",))
    specs = plan_study(["minatar/breakout", "minatar/seaquest"], opt)
    assert [(s.seed, s.run_dir.parent.name, s.agent) for s in specs] == [
        (seed, f"minatar_{g}", a) for seed in (0, 1) for g in ("breakout", "seaquest")
        for a in ("dqn", "wn_dqn")]
    assert {s.config.name for s in specs} == {"minatar_dqn.yaml", "minatar_wn_dqn.yaml"}
    cmd = specs[2].command()
    assert "env.id=minatar/seaquest" in cmd and cmd[-1] == "train.log_period=10"
    assert not any(s.finished for s in specs)


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
    assert "bn_dqn network trained in" in table  # the sweep names the network it measured
    # a second call trains nothing and reads the same runs
    mtime = (runs / "cartpole" / "dqn_s0").stat().st_mtime
    assert compare.main([*argv, "--no-train"]) == 0
    assert (runs / "cartpole" / "dqn_s0").stat().st_mtime == mtime


# ----------------------------------------------------------------------------- across games

def test_normalize_and_stratified_iqm_on_known_scores() -> None:
    raw = {"a": {"x": np.array([2.0, 4.0])}, "b": {"x": np.array([10.0, 30.0])}}
    norm = normalize(raw, {"a": 2.0, "b": 10.0}, {"a": 4.0, "b": 30.0})
    np.testing.assert_allclose(norm["a"]["x"], [0.0, 1.0])
    np.testing.assert_allclose(norm["b"]["x"], [0.0, 1.0])
    worse = normalize({"c": {"x": np.array([1.0, 2.0])}}, {"c": 4.0}, {"c": 2.0})
    np.testing.assert_allclose(worse["c"]["x"], [-0.75, -0.5])  # no run beats random: / |4|
    scores = {"a": {"x": np.arange(4.0)}, "b": {"x": np.arange(4.0, 8.0)}}
    est = stratified_iqm(scores, reps=500)["x"]
    assert est["iqm"] == pytest.approx(3.5) and est["runs"] == 8  # mean of 2, 3, 4, 5
    assert 1.5 <= est["iqm_ci"][0] < 3.5 < est["iqm_ci"][1] <= 5.5
    # Stratified: every replicate keeps each game's share of runs, so with constant scores
    # per game (0 on one, 1 on the other) the IQM never moves from 0.5.
    flat = {"a": {"x": np.zeros(3)}, "b": {"x": np.ones(3)}}
    assert stratified_iqm(flat, reps=300)["x"]["iqm_ci"] == [0.5, 0.5]


def test_probability_of_improvement_on_known_runs() -> None:
    assert prob_greater(np.array([1.0, 2.0, 3.0]), np.array([2.0])) == pytest.approx(0.5)
    assert prob_greater(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert prob_greater(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    scores = {"won": {"x": np.array([5.0, 6.0, 7.0]), "y": np.array([1.0, 2.0, 3.0])},
              "lost": {"x": np.array([0.0, 0.0, 1.0]), "y": np.array([2.0, 3.0, 4.0])}}
    imp = probability_of_improvement(scores, "x", "y", reps=300)
    assert imp["p"] == 0.5
    assert imp["per_game"]["won"] == {"p": 1.0, "ci": [1.0, 1.0]}
    assert imp["per_game"]["lost"] == {"p": 0.0, "ci": [0.0, 0.0]}
    assert imp["ci"] == [0.5, 0.5]
    d = mean_difference(np.array([3.0, 3.0]), np.array([1.0, 2.0]), reps=300)
    assert d["diff"] == 1.5 and d["ci"][0] >= 1.0 and d["ci"][1] <= 2.0


def test_games_summary_normalizes_by_random_and_best_run() -> None:
    noise = {"q_std_rel": 0.0, "action_flip_frac": 0.0, "train_eval_gap": None}
    docs = [{"env": g, "agents": {a: {"final_per_seed": list(f), "auc_per_seed": list(u),
                                       "noise": noise} for a, f, u in rows}}
            for g, rows in (("g1", [("dqn", [1.0, 2.0], [0.5, 1.0]),
                                    ("wn_dqn", [3.0, 5.0], [1.0, 2.0])]),
                            ("g2", [("dqn", [10.0, 20.0], [5.0, 6.0]),
                                    ("wn_dqn", [30.0, 10.0], [7.0, 8.0])]))]
    s = games_summary(docs, {"g1": 1.0, "g2": 10.0}, reps=200)
    assert s["best_final"] == {"g1": 5.0, "g2": 30.0}
    # dqn normalized: g1 [0, 0.25], g2 [0, 0.5] -> IQM (trim 1 of 4 each side) = 0.125
    assert s["final_iqm"]["dqn"]["iqm"] == pytest.approx(0.125)
    assert s["improvement_final"]["per_game"]["g1"]["p"] == 1.0
    assert s["improvement_final"]["per_game"]["g2"]["p"] == pytest.approx(0.625)
    assert s["difference_final"]["g2"]["diff"] == pytest.approx(5.0)


def test_compare_over_two_minatar_games(tmp_path: Path) -> None:
    pytest.importorskip("minatar")
    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--env", "minatar/breakout", "minatar/space_invaders", "--agents", "dqn", "wn_dqn",
            "--seeds", "1", "--steps", "600", "--configs-dir", str(ROOT / "configs"),
            "--runs-dir", str(runs), "--out", str(out), "--nice", "0", "--sweep-sizes", "8",
            "--timing-repeats", "1", "--no-cnn-cost", "train.learning_starts=200",
            "train.noise_period=300", "train.log_period=100", "train.updates_per_step=0.25"]
    compare = load_compare()
    assert compare.main(argv) == 0
    for tag in ("minatar_breakout", "minatar_space_invaders"):
        doc = json.loads((out / tag / "summary.json").read_text())
        assert set(doc["agents"]) == {"dqn", "wn_dqn"}
        assert doc["agents"]["wn_dqn"]["noise"]["q_std"] == 0.0
    games = json.loads((out / "games.json").read_text())
    assert games["games"] == ["minatar/breakout", "minatar/space_invaders"]
    assert 0.2 < games["random_score"]["minatar/breakout"] < 1.0  # MinAtar README: 0.5
    assert set(games["final_iqm"]) == {"dqn", "wn_dqn"}
    assert 0.0 <= games["improvement_final"]["p"] <= 1.0
    assert (out / "games.png").stat().st_size > 20_000
    assert "P(wn_dqn > dqn)" in (out / "games.md").read_text()
    mtime = (runs / "minatar_breakout" / "dqn_s0").stat().st_mtime
    assert compare.main([*argv, "--no-train"]) == 0  # finished runs are read, not retrained
    assert (runs / "minatar_breakout" / "dqn_s0").stat().st_mtime == mtime
