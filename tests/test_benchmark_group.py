"""The group benchmark section: a tiny interleaved measurement of a MinAtar group."""

from __future__ import annotations

import pytest

from wnrl.experiments.benchmark_group import GroupBench, format_group_table, run_group_section

pytest.importorskip("minatar")  # the optional extra the MinAtar setting needs


def test_group_section_reports_interleaved_ratios_and_memory() -> None:
    gb = GroupBench(k=2, rounds=2, minatar_chunk=40, minatar_starts=200)
    (res,) = run_group_section(gb, ("minatar",))
    assert res["k"] == 2 and len(res["ratios"]) == 2
    assert res["solo_env_steps_per_s"] > 0 and res["group_env_steps_per_s"] > 0
    assert res["ratio"] == pytest.approx(sum(res["ratios"]) / 2)  # the median of 2 rounds
    assert res["rss_per_member_mib"] >= 0
    assert "| minatar (minatar/breakout" in format_group_table([res])


def test_size_sweep_times_each_size_in_the_study_settings() -> None:
    import torch

    from wnrl.experiments.benchmark_group import format_sizes_table, measure_sizes

    threads = torch.get_num_threads()
    gb = GroupBench(rounds=2, minatar_chunk=40, minatar_starts=200)
    res = measure_sizes([1, 3], "ln_dqn", gb)
    assert torch.get_num_threads() == threads  # the one-thread setting is undone
    assert res["agent"] == "ln_dqn" and res["updates_per_step"] == 0.25  # the study's ratio
    assert [r["k"] for r in res["sizes"]] == [1, 3]
    for r in res["sizes"]:
        assert len(r["rounds"]) == 2 and all(x > 0 for x in r["rounds"])
        assert r["per_member"] == pytest.approx(r["env_steps_per_s"] / r["k"])
    table = format_sizes_table(res)
    assert "| 3 |" in table and "ln_dqn on minatar/breakout" in table


def _script():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_script", Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_size_sweep_cli_refuses_two_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--group", "2", "--group-sizes", "2", "5"]) == 2
    assert "give one" in capsys.readouterr().err


def test_size_sweep_cli_refuses_a_device_it_would_not_measure(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--group-sizes", "2", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda" in err
