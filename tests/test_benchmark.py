"""The benchmark's quick mode runs end to end and reports every measurement (not timed)."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from wnrl.accel import native_bf16
from wnrl.experiments.benchmark import BenchConfig, format_table, interleaved
from wnrl.experiments.benchmark_peer import peer_available

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def test_interleaved_takes_medians_per_function() -> None:
    calls: list[str] = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2, 3)
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())
    assert calls == (["a"] * 3 + ["b"] * 3) * 3  # warm-up + 2 calls each, round-robin


def test_quick_mode_reports_all_seven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bench.json"
    tiny = ["--quick", "--learning-starts", "256", "--measure-steps", "64", "--repeats", "1",
            "--env-seconds", "0.2", "--replay-capacity", "2000", "--num-envs", "4",
            "--modes", "eager-bf16", "--compile", "false", "--json", str(out)]
    tiny += [] if peer_available() else ["--no-peer"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *tiny])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 0
    res = json.loads(out.read_text())
    modes = res["learner"]["batch32"]
    assert set(modes) == {"eager fp32"} | ({"eager bf16"} if native_bf16(torch.device("cpu"))
                                           else set())
    for per in modes.values():
        assert set(per) == {"none", "weight", "batch", "weight+mean_only"}
        assert per["none"]["ratio"] == 1.0
    assert all(v["speedup"] == 1.0 for v in modes["eager fp32"].values())
    assert res["actor"]["standard"]["ratio"] == 1.0 and res["actor"]["fold_ms"] > 0
    assert res["replay"]["capacity"] == 1_000_000
    assert 7056 <= res["replay"]["bytes_per_transition"] <= 7200  # 84*84 frame + 9 B of row data
    assert res["replay"]["sample32_ms"] > 0 and res["env"]["env_steps_per_s"] > 0
    assert res["bound"]["env_steps_per_s"] == pytest.approx(4 * res["bound"]["updates_per_s"])
    for mode in ("sync", "async"):
        e = res[f"e2e_{mode}"]
        assert e["env_steps"] >= 64 and e["env_steps_per_s"] > 0
        assert e["updates_per_env_step"] == pytest.approx(0.25, abs=0.1)
        assert len(e["chunks"]) == BenchConfig.quick().e2e_chunks
        assert sum(c["env_steps"] for c in e["chunks"]) == e["env_steps"]
        ratios = sorted(c["ratio_to_bound"] for c in e["chunks"])
        assert e["ratio_to_bound"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    assert len(res["bound"]["runs"]) == 2 * (BenchConfig.quick().e2e_chunks + 1)
    if peer_available():
        assert res["peer"]["env_steps"] >= 64 and res["peer"]["wnrl_ratio"] > 0
    table = format_table(res)
    assert "end-to-end async" in table and "replay sample32" in table
    assert BenchConfig.quick().measure_steps < BenchConfig().measure_steps


@pytest.mark.parametrize("device", ["cuda", "tpu", "auto", "cpu"])
def test_device_choice(device: str) -> None:
    from wnrl.experiments.benchmark import check_device

    problem = check_device(device)
    if device == "cpu" or (device in ("cuda", "auto") and torch.cuda.is_available()):
        assert problem is None
    elif device == "auto":
        assert problem is None  # auto falls back to the CPU
    else:
        assert problem is not None and device in problem and "\n" not in problem


def test_learners_and_actor_nets_live_on_the_chosen_device() -> None:
    from wnrl.experiments.benchmark_e2e import e2e_config

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = e2e_config(BenchConfig.quick(device=dev), "async", "/tmp")
    assert cfg.learner.device == dev and cfg.train.mode == "async"
    assert cfg.learner.batch_size == 32 and cfg.train.updates_per_step == 0.25
    from wnrl.training import build

    parts = build(dataclasses.replace(cfg, replay=dataclasses.replace(cfg.replay, capacity=1000)))
    assert {p.device.type for p in parts.learner.online.parameters()} == {dev}
    assert {p.device.type for p in parts.learner.target_net.parameters()} == {dev}
    parts.env.close()


@pytest.mark.parametrize("args", [["--measure-steps", "0"], ["--e2e-chunks", "x"],
                                  ["--batch-sizes", "32", "-1"]])
def test_bad_numbers_are_refused_with_exit_code_2(args: list[str],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and err.startswith("benchmark.py: error: argument")
