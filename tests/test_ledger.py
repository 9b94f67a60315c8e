"""The study ledger: records round-trip, are keyed by rate within float noise, and the
first study's per-game summaries become records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wnrl.experiments.ledger import Ledger, RunRecord, first_study_records

ROOT = Path(__file__).resolve().parents[1]


def rec(agent: str = "dqn", seed: int = 0, lr: float = 2.5e-4, final: float = 1.0,
        phase: str = "main", env: str = "minatar/breakout", steps: int = 1000) -> RunRecord:
    return RunRecord(phase, env, agent, seed, lr, steps, final, final / 2,
                     curve=(0.0, final), noise={"q_std": 0.0, "q_std_rel": None},
                     eval_returns=(final, final + 1.0), eval_epsilon=0.001, source="x")


def test_round_trip_is_sorted_and_exact(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    records = [rec("wn_dqn", 1, final=3.5), rec("dqn", 0, lr=1e-3), rec("dqn", 0)]
    Ledger(path, records).save()
    back = Ledger.load(path)
    assert sorted(back.records.values(), key=lambda r: r.key) == sorted(records,
                                                                       key=lambda r: r.key)
    keys = [RunRecord.from_dict(json.loads(line)).key for line in path.read_text().splitlines()]
    assert keys == sorted(keys) and len(keys) == 3  # written in key order
    assert back.records[records[0].key].eval_mean == 4.0


def test_rates_match_within_float_noise_and_select_filters(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "r.jsonl", [rec(seed=s) for s in range(3)] + [rec(lr=1e-3)])
    assert led.has("main", "minatar/breakout", "dqn", 2, 0.00025000000000000001, 1000)
    assert not led.has("main", "minatar/breakout", "dqn", 2, 1e-3, 1000)
    assert [r.seed for r in led.select("main", agent="dqn", lr=2.5e-4)] == [0, 1, 2]
    assert led.select("tune") == []
    assert len(led.select("main", total_steps=1000)) == 4


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(rec().to_json() + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        Ledger.load(path)
    assert Ledger.load(tmp_path / "none.jsonl").records == {}


def test_first_study_summaries_become_records() -> None:
    path = ROOT / "docs/results/minatar/minatar_breakout/summary.json"
    records = first_study_records(path, "main", 2.5e-4)
    assert len(records) == 12  # 4 agents x 3 seeds
    wn = [r for r in records if r.agent == "wn_dqn"]
    assert [r.seed for r in wn] == [0, 1, 2]
    assert sum(r.final for r in wn) / 3 == pytest.approx(19.1131446986186)
    assert all(r.curve is None and r.eval_returns is None for r in records)
