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
from wnrl.recipe import NORMS

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
            "--modes", "eager-bf16", "--compile", "false", "--agent", "dqn",
            "--replay-devices", "host", "learner", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *tiny])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 0
    res = json.loads(out.read_text())
    modes = res["learner"]["batch32"]
    assert set(modes) == {"eager fp32"} | ({"eager bf16"} if native_bf16(torch.device("cpu"))
                                           else set())
    for per in modes.values():
        assert set(per) == set(NORMS)
        assert per["none"]["ratio"] == 1.0
    assert all(v["speedup"] == 1.0 for v in modes["eager fp32"].values())
    assert res["actor"]["standard"]["ratio"] == 1.0 and res["actor"]["fold_ms"] > 0
    assert res["replay"]["capacity"] == 1_000_000
    assert 7056 <= res["replay"]["bytes_per_transition"] <= 7200  # 84*84 frame + 9 B of row data
    assert res["replay"]["sample32_ms"] > 0 and res["env"]["env_steps_per_s"] > 0
    placed = res["replay"]["to_learner"]
    assert placed["capacity"] == 2000 and placed["device"] == "cpu"
    assert placed["speedup"] == pytest.approx(placed["host_sample32_copy_ms"]
                                              / placed["device_sample32_ms"])
    assert res["bound"]["env_steps_per_s"] == pytest.approx(4 * res["bound"]["updates_per_s"])
    for mode in ("sync", "async"):
        e = res[f"e2e_{mode}"]
        assert e["env_steps"] >= 64 and e["env_steps_per_s"] > 0
        assert e["updates_per_env_step"] == pytest.approx(0.25, abs=0.1)
        assert len(e["chunks"]) == BenchConfig.quick().e2e_chunks
        assert sum(c["env_steps"] for c in e["chunks"]) == e["env_steps"]
        ratios = sorted(c["ratio_to_bound"] for c in e["chunks"])
        assert e["ratio_to_bound"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    u = res["update_runs"]
    assert u["run"] == 4 and u["speedup"] == pytest.approx(u["single_ms_per_update"]
                                                            / u["runs_ms_per_update"])
    # the second replay placement: its own runs, against the same bound
    assert res["e2e_sync"]["replay_device"] == "host"
    for mode in ("sync", "async"):
        e = res[f"e2e_{mode}_replay_learner"]
        assert e["replay_note"] == "replay on cpu (replay.device=learner)"
        assert e["env_steps"] >= 64 and e["updates_per_env_step"] == pytest.approx(0.25, abs=0.1)
    # the bound: measured around the headline runs (with the peer, the peer section's)
    assert len(res["bound"]["runs"]) == 2 * (BenchConfig.quick().e2e_chunks + 1) * (
        1 if peer_available() else 2)
    table = format_table(res)
    assert "replay.device=learner" in table and "DeviceReplay sample" in table
    assert "end-to-end async" in table and "replay sample32" in table
    if peer_available():  # --agent dqn: the peer section's wnrl runs are the e2e section's
        peer = res["peer"]
        assert peer["runs"]["wnrl_sync"] == res["e2e_sync"]
        assert peer["runs"]["wnrl_async"] == res["e2e_async"]
        assert_peer_section(peer, num_envs=4, chunks=BenchConfig.quick().e2e_chunks)
        assert "wnrl_sync/sb3_matched" in table and "1 env)" in table
    else:
        assert res["peer"]["skipped"].startswith("stable-baselines3 not installed")


def assert_peer_section(peer: dict, num_envs: int, chunks: int) -> None:
    """Both peers ran at one update per 4 env steps, each run was timed in `chunks` parts
    against its own bound, and every ratio comes with its spread over the parts."""
    runs = peer["runs"]
    assert set(runs) == {"wnrl_sync", "wnrl_async", "sb3_zoo", "sb3_matched"}
    assert runs["sb3_zoo"]["num_envs"] == 1 and runs["sb3_matched"]["num_envs"] == num_envs
    assert runs["wnrl_sync"]["num_envs"] == num_envs and peer["agent"] == "dqn"
    for name in ("wnrl_sync", "sb3_zoo", "sb3_matched"):  # async may run ahead by its tolerance
        assert runs[name]["updates_per_env_step"] == pytest.approx(0.25, abs=0.02)
    side = {"wnrl_sync": "wnrl", "wnrl_async": "wnrl", "sb3_zoo": "sb3_zoo",
            "sb3_matched": "sb3_matched"}
    for name, r in runs.items():
        assert len(r["chunks"]) == chunks and len(r["yardstick"]) == chunks + 1
        assert all(set(p) == {"wnrl", "sb3_zoo", "sb3_matched"} for p in r["yardstick"])
        first = r["chunks"][0]
        mean = (r["yardstick"][0][side[name]] + r["yardstick"][1][side[name]]) / 2
        assert first["ratio_to_bound"] == pytest.approx(first["env_steps_per_s"] / mean)
    assert set(peer["ratios"]) == {f"{w}/{p}" for w in ("wnrl_sync", "wnrl_async")
                                   for p in ("sb3_zoo", "sb3_matched")}
    for x in peer["ratios"].values():
        assert x["min"] <= x["median"] <= x["max"] and len(x["parts"]) == chunks
    zoo, matched = peer["settings"]["sb3_zoo"], peer["settings"]["sb3_matched"]
    assert (zoo["train_freq"], zoo["gradient_steps"], zoo["target_update_interval"]) == (4, 1, 1000)
    assert matched["policy_kwargs"]["optimizer_kwargs"]["fused"] is True
    assert any("DummyVecEnv" in d for d in peer["differences"])
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


@pytest.mark.parametrize(("num_envs", "expected"), [(1, (4, 1)), (2, (2, 1)), (6, (2, 3)),
                                                    (8, (1, 2)), (16, (1, 4))])
def test_peer_schedule_is_one_update_per_4_env_steps(num_envs: int,
                                                     expected: tuple[int, int]) -> None:
    from wnrl.experiments.benchmark_peer import peer_schedule

    train_freq, gradient_steps = peer_schedule(num_envs)
    assert (train_freq, gradient_steps) == expected
    assert gradient_steps / (train_freq * num_envs) == 0.25  # train_freq counts vector steps


def _run(rates: list[float], bounds: list[float], side: str) -> dict:
    """A run as `against_bound` reports it: parts at `rates`, `side`'s bound at `bounds`
    (one more than the parts), the other side's bound 2/3 of it at every point."""
    other = "sb3" if side == "wnrl" else "wnrl"
    scale = 2 / 3 if side == "wnrl" else 1.5
    points = [{side: b, other: b * scale} for b in bounds]
    chunks = [{"env_steps_per_s": r, "ratio_to_bound": r / ((b0 + b1) / 2)}
              for r, b0, b1 in zip(rates, bounds, bounds[1:])]
    return {"chunks": chunks, "yardstick": points, "env_steps_per_s": sum(rates) / len(rates)}


def test_cross_ratio_cancels_the_drift_between_runs() -> None:
    from wnrl.experiments.benchmark_vs_peer import cross_ratio

    # wnrl at 0.9 of a bound of 100; the peer at 0.8 of a bound 2/3 of wnrl's, measured
    # minutes later when the machine ran 25% slower (bound 50 instead of 66.7)
    wnrl = _run([90.0, 90.0, 90.0], [100.0] * 4, "wnrl")
    peer = _run([40.0, 40.0, 40.0], [50.0] * 4, "sb3")
    x = cross_ratio(wnrl, "wnrl", peer, "sb3")
    assert x["raw"] == pytest.approx(90 / 40)  # drift included
    assert x["bound_ratio"] == pytest.approx(1.5)
    assert x["median"] == x["min"] == x["max"] == pytest.approx(0.9 / 0.8 * 1.5)
    slow_part = _run([90.0, 45.0, 90.0], [100.0] * 4, "wnrl")  # one part at half speed
    y = cross_ratio(slow_part, "wnrl", peer, "sb3")
    assert y["min"] == pytest.approx(0.45 / 0.8 * 1.5) and y["median"] == x["median"]


class _FakeRun:
    """A `Run` whose steps and updates are counted, not played."""

    num_envs = 4

    def __init__(self) -> None:
        self.steps, self.closed = 0, False

    def advance(self, env_steps: int) -> tuple[int, int]:
        self.steps += env_steps
        return env_steps, env_steps // 4

    def close(self) -> None:
        self.closed = True


def test_against_bound_puts_the_yardstick_between_the_parts() -> None:
    from wnrl.experiments.benchmark_e2e import Yardstick, against_bound

    bc = BenchConfig.quick(learning_starts=100, measure_steps=64, e2e_chunks=4, repeats=1,
                           updates_per_round=1)
    run = _FakeRun()
    calls = iter(range(100))
    yard = Yardstick(bc, {"a": lambda: None, "b": lambda: None})
    yard.measure = lambda: yard.history.append({"a": 10.0 + next(calls), "b": 1.0})  # type: ignore[method-assign]
    e2e = against_bound(run, "a", bc, yard)
    assert run.closed and run.steps == 100 + 4 * 4 + 64  # warm-up with its first update
    assert [p["a"] for p in e2e["yardstick"]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [c["bound_env_steps_per_s"] for c in e2e["chunks"]] == [10.5, 11.5, 12.5, 13.5]
    assert e2e["bound_env_steps_per_s"] == 12.0 and e2e["updates_per_env_step"] == 0.25
    ratios = sorted(c["env_steps_per_s"] / c["bound_env_steps_per_s"] for c in e2e["chunks"])
    assert e2e["ratio_to_bound"] == pytest.approx((ratios[1] + ratios[2]) / 2)


@pytest.mark.skipif(not peer_available(), reason="needs stable-baselines3 (bench extra)")
def test_peers_optimizers() -> None:
    from wnrl.experiments.benchmark_peer import make_peer, make_peer_env

    bc = BenchConfig.quick(replay_capacity=1000, num_envs=2)
    env = make_peer_env("pong", seed=0, num_envs=2)
    zoo, matched = make_peer(bc, "sb3_zoo", env), make_peer(bc, "sb3_matched", env)
    env.close()
    assert not zoo.policy.optimizer.defaults["fused"]  # SB3's default: single-tensor on CPU
    assert zoo.policy.optimizer.defaults["eps"] == 1e-8
    d = matched.policy.optimizer.defaults
    assert d["fused"] is True and d["eps"] == 1.5e-4 and d["betas"] == (0.9, 0.999)
    assert (matched.train_freq.frequency, matched.gradient_steps) == (2, 1)  # 2 envs
    assert matched.target_update_interval == 4 * bc.target_update_period
