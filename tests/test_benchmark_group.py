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
