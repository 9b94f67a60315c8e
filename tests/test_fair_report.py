"""The fair study's statistics on made-up ledgers whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wnrl.experiments.fair import FairProtocol
from wnrl.experiments.fair_report import (
    choose_rates,
    compare,
    comparison_markdown,
    performance_profile,
)
from wnrl.experiments.ledger import Ledger, RunRecord

GAMES = ("g/a", "g/b")
RANDOM = {"g/a": 0.0, "g/b": 10.0}
P = FairProtocol(games=GAMES, agents=("dqn", "wn_dqn", "ln_dqn"), rates=(1e-4, 1e-3, 1e-2),
                 tune_seeds=(7, 8), tune_steps=100, seeds=(0, 1, 2), steps=1000,
                 shared_rate=1e-3)


def tuning_ledger(best: dict[str, float]) -> Ledger:
    """AUC peaks at best[agent] on every game, with seed noise smaller than the gaps."""
    recs = []
    for g in GAMES:
        for agent, peak in best.items():
            for lr in P.rates:
                for seed in P.tune_seeds:
                    auc = RANDOM[g] + 10.0 - 3.0 * abs(np.log10(lr / peak)) + 0.1 * seed
                    recs.append(RunRecord("tune", g, agent, seed, lr, 100, auc + 1, auc))
    return Ledger(Path("unused"), recs)


def test_the_rate_with_the_best_auc_on_every_game_is_chosen() -> None:
    led = tuning_ledger({"dqn": 1e-3, "wn_dqn": 1e-2, "ln_dqn": 1e-4})
    out = choose_rates(led, P, RANDOM, reps=200)
    assert out["chosen"] == {"dqn": 1e-3, "wn_dqn": 1e-2, "ln_dqn": 1e-4}
    est = out["table"]["dqn"]["0.001"]
    assert est["iqm_ci"][0] <= est["iqm"] <= est["iqm_ci"][1]


def test_no_choice_until_every_rate_game_and_seed_is_in() -> None:
    led = tuning_ledger({"dqn": 1e-3, "wn_dqn": 1e-2, "ln_dqn": 1e-4})
    del led.records[("tune", "g/b", "wn_dqn", 8, "0.01", 100)]
    out = choose_rates(led, P, RANDOM, reps=50)
    assert "wn_dqn" not in out["chosen"] and "dqn" in out["chosen"]


def main_ledger() -> Ledger:
    """wn_dqn beats dqn in every run of every game; ln_dqn lacks game b."""
    recs = []
    for g in GAMES:
        for seed in P.seeds:
            recs.append(RunRecord("main", g, "dqn", seed, 1e-3, 1000, RANDOM[g] + 4 + seed,
                                  RANDOM[g] + 2, eval_returns=(RANDOM[g] + 4.0,)))
            recs.append(RunRecord("main", g, "wn_dqn", seed, 1e-2, 1000, RANDOM[g] + 10 + seed,
                                  RANDOM[g] + 5, eval_returns=(RANDOM[g] + 9.0,),
                                  noise={"q_std_rel": 0.1 * seed, "train_eval_gap": None}))
    recs.append(RunRecord("main", "g/a", "ln_dqn", 0, 1e-3, 1000, 3.0, 1.0))
    return Ledger(Path("unused"), recs)


def test_compare_normalizers_improvement_and_incomplete_agents() -> None:
    out = compare(main_ledger(), P, {"dqn": 1e-3, "wn_dqn": 1e-2, "ln_dqn": 1e-3}, RANDOM,
                  reps=300)
    assert out["incomplete"] == ["ln_dqn"] and set(out["rates"]) == {"dqn", "wn_dqn"}
    best, mean = out["normalizers"]["best run"], out["normalizers"]["dqn mean"]
    assert best["high"] == {"g/a": 12.0, "g/b": 22.0}  # best final of any main run
    assert mean["high"] == {"g/a": 5.0, "g/b": 15.0}  # dqn's mean at the shared rate
    assert best["final"]["wn_dqn"]["iqm"] == pytest.approx(11 / 12, abs=0.05)
    assert mean["final"]["dqn"]["iqm"] == pytest.approx(1.0)
    assert mean["eval"]["wn_dqn"]["iqm"] == pytest.approx(9 / 5)
    imp = out["improvement"]["dqn"]["final"]
    assert imp["p"] == 0.0 and imp["ci"] == [0.0, 0.0]  # every dqn run loses
    assert out["per_game"]["g/b"]["wn_dqn"]["final_per_seed"] == [20.0, 21.0, 22.0]
    assert out["noise"]["wn_dqn"] == {"runs": 6, "q_std_rel": pytest.approx(0.1),
                                      "train_eval_gap": None}
    assert out["noise"]["dqn"] == {"runs": 0}


def test_evaluation_iqm_counts_only_evaluated_runs_of_agents_evaluated_on_every_game() -> None:
    led = main_ledger()
    for seed in P.seeds:  # ln_dqn on both games, evaluated on neither: no eval IQM for it
        led.add(RunRecord("main", "g/b", "ln_dqn", seed, 1e-3, 1000, RANDOM["g/b"] + 3.0,
                          RANDOM["g/b"] + 1))
    for seed in (1, 2):  # dqn evaluated in seed 0 of each game only
        for g in GAMES:
            led.add(RunRecord("main", g, "dqn", seed, 1e-3, 1000, RANDOM[g] + 4 + seed,
                              RANDOM[g] + 2))  # replaces the evaluated record
    out = compare(led, P, {"dqn": 1e-3, "wn_dqn": 1e-2, "ln_dqn": 1e-3}, RANDOM, reps=100)
    assert out["incomplete"] == [] and out["runs"]["g/b"]["ln_dqn"] == 3
    ev = out["normalizers"]["dqn mean"]["eval"]
    assert set(ev) == {"dqn", "wn_dqn"}
    assert ev["dqn"]["runs"] == 2 and ev["wn_dqn"]["runs"] == 6
    assert ev["dqn"]["iqm"] == pytest.approx(4 / 5)  # (random + 4 - random) / 5 on both games
    table = comparison_markdown(out, "t")
    assert "n=2 |" in table and "n=6 |" in table
    (ln_row,) = [line for line in table.splitlines() if line.startswith("| `ln_dqn` | 0.001")]
    assert ln_row.endswith("| n/a |")


def test_performance_profile_is_a_decreasing_fraction() -> None:
    norm = {"a": {"x": np.array([0.1, 0.5, 0.9])}, "b": {"x": np.array([0.3, 1.2])}}
    prof = performance_profile(norm, "x", reps=200)
    frac = np.array(prof["fraction"])
    assert frac[0] == 1.0 and frac[-1] == 0.0 and np.all(np.diff(frac) <= 0)
    tau = np.array(prof["tau"])
    at = frac[np.argmin(abs(tau - 0.4))]  # game a: 2 of 3 above, game b: 1 of 2
    assert at == pytest.approx((2 / 3 + 1 / 2) / 2)
    lo, hi = np.array(prof["lo"]), np.array(prof["hi"])
    assert np.all(lo <= frac + 1e-12) and np.all(frac <= hi + 1e-12)
