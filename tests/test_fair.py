"""The fair study's plan, groups and command line, end to end on a tiny CartPole budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wnrl.config import load_config
from wnrl.experiments.fair import (
    MAIN,
    FairProtocol,
    GroupSpec,
    cross_rates,
    plan_cross,
    plan_main,
    plan_tuning,
)
from wnrl.experiments.ledger import Ledger, RunRecord
from wnrl.group.members import member_configs

ROOT = Path(__file__).resolve().parents[1]
P = FairProtocol(configs_dir=ROOT / "configs", runs_dir=Path("R"))


def test_tuning_plan_is_one_group_per_game_and_agent_named_as_wnrl_group_names_runs() -> None:
    specs = plan_tuning(P, Ledger(Path("x")))
    assert len(specs) == len(P.games) * len(P.agents)
    spec = specs[0]
    assert spec.dir == Path("R/tune/minatar_breakout") and spec.schedule_steps == P.steps
    cfg = load_config(spec.config, ["env.id=minatar/breakout", "train.run_name=dqn",
                                    "train.seeds=[100,101]"])
    names = [c.train.run_name for c in member_configs(cfg, list(P.rates))]
    assert [d.name for _, _, d in spec.members] == names  # the dirs wnrl.group writes
    cmd = spec.command()
    assert "--seeds" in cmd and cmd[cmd.index("--seeds") + 1] == "100,101"
    assert "learner.lr=[6.25e-05,0.00025,0.001,0.004]" in cmd
    assert "train.schedule_steps=1000000" in cmd and "--resume" not in cmd


def test_a_started_group_resumes_and_a_finished_one_is_finished(tmp_path: Path) -> None:
    spec = GroupSpec(MAIN, "dqn", "CartPole-v1", (3, 4), (1e-3,), 500, 500,
                     ROOT / "configs/cartpole_dqn.yaml", tmp_path)
    assert [d.name for _, _, d in spec.members] == ["dqn_s3", "dqn_s4"]  # one rate: no suffix
    (tmp_path / "dqn_s4" / "checkpoints").mkdir(parents=True)
    assert "--force" in spec.command()  # a member dir exists, no checkpoint yet
    (tmp_path / "dqn_s4/checkpoints/ckpt_000000000200.pt").touch()
    assert spec.command()[-2:] == ["--resume", str(tmp_path / "dqn_s4")]
    assert not spec.finished
    for s in ("dqn_s3", "dqn_s4"):
        (tmp_path / s / "checkpoints").mkdir(parents=True, exist_ok=True)
        (tmp_path / s / "checkpoints/ckpt_000000000500.pt").touch()
    assert spec.finished


def test_main_plan_trains_only_the_seeds_the_ledger_lacks() -> None:
    led = Ledger(Path("x"), [RunRecord(MAIN, g, "dqn", s, 2.5e-4, P.steps, 1.0, 1.0)
                             for g in P.games for s in (0, 1, 2)])
    specs = plan_main(P, {"dqn": (2.5e-4, 2.5e-4), "ln_dqn": (1e-3, 2.5e-4)}, led)
    dqn = [s for s in specs if s.agent == "dqn"]
    assert len(dqn) == 3 and all(s.seeds == (3, 4) for s in dqn)  # the rate listed twice: once
    ln = [s for s in specs if s.agent == "ln_dqn"]
    assert len(ln) == 6 and all(s.seeds == (0, 1, 2, 3, 4) for s in ln)
    assert {s.dir.name for s in ln} == {"lr0.001", "lr0.00025"}


def test_main_plan_trains_the_batch_independent_agents_first_tuned_rate_first() -> None:
    led = Ledger(Path("x"))
    rates = {"bn_dqn": (1e-3, 2.5e-4), "dqn": (2.5e-4,), "ln_dqn": (4e-3, 2.5e-4)}
    order = [(s.agent, f"{s.rates[0]:g}") for s in plan_main(P, rates, led)][::len(P.games)]
    assert order == [("dqn", "0.00025"), ("ln_dqn", "0.004"), ("ln_dqn", "0.00025"),
                     ("bn_dqn", "0.001"), ("bn_dqn", "0.00025")]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/fair_study.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


TINY = ["--games", "CartPole-v1", "--agents", "dqn", "wn_dqn", "--rates", "1e-3", "4e-3",
        "--tune-seeds", "100", "--tune-steps", "1500", "--seeds", "2", "--steps", "1500",
        "--eval-episodes", "2", "--out", "out", "--runs-dir", "runs", "--configs-dir",
        str(ROOT / "configs"), "--first-study", "", "--reps", "100"]


def test_end_to_end_then_report_again_from_the_ledger_alone(tmp_path: Path) -> None:
    plan = run_cli(*TINY, "--plan", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr[-2000:]
    # tuning: 2 agents x 2 rates x 1 seed; main (shared rate only until tuning is done): 2 x 2
    assert "tuning: 2 groups, 6,000 env steps left" in plan.stdout
    assert "main: 2 groups, 6,000 env steps left" in plan.stdout
    assert not (tmp_path / "runs").exists()  # planning trains nothing
    first = run_cli(*TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = (tmp_path / "out/runs.jsonl").read_text().splitlines()
    recs = [RunRecord.from_dict(json.loads(line)) for line in lines]
    tune = [r for r in recs if r.phase == "tune"]
    main = [r for r in recs if r.phase == "main"]
    assert len(tune) == 4 and all(r.eval_returns is None for r in tune)
    doc = json.loads((tmp_path / "out/fair.json").read_text())
    chosen = doc["tuning"]["chosen"]
    assert set(chosen) == {"dqn", "wn_dqn"}
    # main runs: 2 seeds at each agent's chosen rate and at the shared rate 2.5e-4, and
    # the rate check: each at the other's chosen rate (both are first agents)
    want = {(a, s, f"{lr:g}") for a in chosen for lr in {*chosen.values(), 2.5e-4}
            for s in (0, 1)}
    assert {(r.agent, r.seed, f"{r.lr:g}") for r in main} == want
    if chosen["dqn"] != chosen["wn_dqn"]:
        for lr in chosen.values():
            check = doc["comparisons"][f"rate check at lr {lr:g}"]
            assert check["rates"] == {"dqn": lr, "wn_dqn": lr}
    assert all(len(r.eval_returns) == 2 and r.eval_epsilon == 0.001 for r in main)
    for name in ("fair.md", "tuning.png", "profiles.png", "curves_tuned_rates.png",
                 "curves_shared_rate.png"):
        assert (tmp_path / "out" / name).is_file(), name

    # finished runs missing from the ledger (a study stopped before it saved them) are
    # recorded from their run directories by any later command, --no-train included
    ledger = tmp_path / "out/runs.jsonl"
    ledger.write_text("".join(line + "\n" for line, r in zip(lines, recs) if r.phase == "tune"))
    again = run_cli(*TINY, "--no-train", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("recorded main") == len(main)
    assert sorted(ledger.read_text().splitlines()) == sorted(lines)
    assert json.loads((tmp_path / "out/fair.json").read_text()) == doc

    import shutil

    shutil.rmtree(tmp_path / "runs")  # the ledger alone reproduces every table
    again = run_cli(*TINY, "--no-train", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "out/fair.json").read_text()) == doc
    plan = run_cli(*TINY, "--plan", cwd=tmp_path)
    assert "0 groups, 0 env steps left" in plan.stdout
    rerun = run_cli(*TINY, cwd=tmp_path)  # training on: the ledger says nothing is left
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
    assert json.loads((tmp_path / "out/fair.json").read_text()) == doc


def test_groups_trains_only_the_first_groups_of_the_plan(tmp_path: Path) -> None:
    """`--groups 1` trains the plan's first group and records it; the next call's plan
    starts at the group after it."""
    first = run_cli(*TINY, "--phase", "tune", "--groups", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = (tmp_path / "out/runs.jsonl").read_text().splitlines()
    recs = [RunRecord.from_dict(json.loads(line)) for line in lines]
    assert {(r.phase, r.agent) for r in recs} == {("tune", "dqn")} and len(recs) == 2
    assert sorted(p.name for p in (tmp_path / "runs/tune").glob("*/*") if p.is_dir()) == [
        "dqn_s100_lr0.001", "dqn_s100_lr0.004"]
    plan = run_cli(*TINY, "--plan", cwd=tmp_path)
    assert "tuning: 1 groups, 3,000 env steps left" in plan.stdout


@pytest.mark.parametrize("bad, says", [(["--tune-steps", "0"], "--tune-steps must be >= 1"),
                                       (["--rates", "1e-3", "1e-3"], "--rates must be distinct"),
                                       (["--groups", "0"], "--groups must be >= 1")])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, bad: list[str], says: str) -> None:
    res = run_cli(*TINY, *bad, cwd=tmp_path)
    assert res.returncode == 2 and says in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_cut_trains_the_late_agents_on_three_seeds_only() -> None:
    """The pre-registered cut: `bn_dqn` and `wn_mobn_dqn` (after `first_agents`) get seeds
    0-2 at every rate, so a shared-rate cell the first study filled needs nothing; the
    batch-independent agents keep all 5; `late_seeds=None` trains everyone on 5."""
    led = Ledger(Path("x"))
    for game in P.games:
        for agent in ("dqn", "bn_dqn", "wn_mobn_dqn"):
            for seed in (0, 1, 2):
                led.add(RunRecord(MAIN, game, agent, seed, 2.5e-4, P.steps, final=1.0,
                                  auc=1.0))
    rates = {"dqn": (1e-3, 2.5e-4), "bn_dqn": (2.5e-4,), "wn_mobn_dqn": (4e-3, 2.5e-4)}
    cells = {(s.agent, s.rates[0], s.seeds) for s in plan_main(P, rates, led)}
    assert cells == {("dqn", 1e-3, (0, 1, 2, 3, 4)), ("dqn", 2.5e-4, (3, 4)),
                     ("wn_mobn_dqn", 4e-3, (0, 1, 2))}
    full = FairProtocol(configs_dir=P.configs_dir, runs_dir=P.runs_dir, late_seeds=None)
    cells = {(s.agent, s.rates[0], s.seeds) for s in plan_main(full, rates, led)}
    assert ("bn_dqn", 2.5e-4, (3, 4)) in cells and ("wn_mobn_dqn", 4e-3, (0, 1, 2, 3, 4)) in cells


def test_the_rate_check_runs_each_first_agent_at_the_others_tuned_rates() -> None:
    """Only rates an agent was not already compared at (its own, the shared one), only the
    first agents, on the first `cross_seeds` seeds the ledger lacks; None: no check."""
    chosen = {"dqn": 1e-3, "wn_dqn": 2.5e-4, "ln_dqn": 1e-3, "bn_dqn": 2.5e-4,
              "wn_mobn_dqn": 4e-3}
    assert cross_rates(P, chosen) == {"wn_dqn": (1e-3,)}
    assert cross_rates(P, chosen | {"ln_dqn": 4e-3}) == {
        "dqn": (4e-3,), "wn_dqn": (1e-3, 4e-3), "ln_dqn": (1e-3,)}
    led = Ledger(Path("x"), [RunRecord(MAIN, P.games[0], "wn_dqn", 0, 1e-3, P.steps, 1.0, 1.0),
                             RunRecord(MAIN, P.games[1], "wn_dqn", 0, 4e-3, P.steps, 1.0, 1.0)])
    specs = plan_cross(P, chosen, led)
    assert [(s.env_id, s.agent, s.rates, s.seeds) for s in specs] == [
        (P.games[0], "wn_dqn", (1e-3,), (1, 2)), (P.games[1], "wn_dqn", (1e-3,), (0, 1, 2)),
        (P.games[2], "wn_dqn", (1e-3,), (0, 1, 2))]
    assert all(s.dir.name == "lr0.001" and s.total_steps == P.steps for s in specs)
    off = FairProtocol(configs_dir=P.configs_dir, runs_dir=P.runs_dir, cross_seeds=None)
    assert cross_rates(off, chosen) == {} and plan_cross(off, chosen, led) == []
