"""The autotune: `auto` learner modes measured on copies at the first update, the fastest
kept and cached; a cached choice skips the trial; explicit values are never overridden.

Timings are injected (a fake clock or fake trial results) so that the tests decide the
winner; the compared modes are two eager ones (fp32, bf16: bf16 runs emulated on a CPU
without it) so that no test pays a compile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wnrl import autotune
from wnrl.autotune import Mode
from wnrl.config import LearnerConfig
from wnrl.learner import Learner
from wnrl.networks import make_q_network
from wnrl.replay import Batch

FP32, BF16 = Mode(False, "fp32"), Mode(False, "bf16")


@pytest.fixture(autouse=True)
def tune_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The trial on, a cache of this test's own, and two cheap modes to compare."""
    monkeypatch.setenv("WNRL_AUTOTUNE", "1")
    monkeypatch.setenv("WNRL_CACHE_DIR", str(tmp_path / "cache"))
    real = autotune.candidates
    monkeypatch.setattr(autotune, "candidates", lambda cfg, device: [FP32, BF16]
                        if cfg.precision == "auto" else real(cfg, device))
    return tmp_path / "cache" / "autotune.json"


def batch(seed: int, b: int = 16) -> Batch:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((2, b, 6)).astype(np.float32)
    return Batch(obs=obs[0], action=rng.integers(3, size=b),
                 reward=rng.standard_normal(b).astype(np.float32),
                 discount=np.full(b, 0.99, np.float32), next_obs=obs[1],
                 weight=np.ones(b, np.float32), index=np.arange(b))


def learner(**mode: str) -> Learner:
    torch.manual_seed(0)
    net = make_q_network((6,), 3, norm="weight", hidden_sizes=(32, 32))
    return Learner(net, LearnerConfig(device="cpu", lr=1e-3, batch_size=16,
                                      target_update_period=2, **mode))


def fake_ms(monkeypatch: pytest.MonkeyPatch, ms: dict[str, float]) -> list[int]:
    """Trials run for real (copies update) but report `ms`; returns a list counting them."""
    real, calls = autotune.trial, []

    def trial(modes, make, **kw):
        calls.append(1)
        real(modes, make, **kw)
        return {m.name: ms[m.name] for m in modes}

    monkeypatch.setattr(autotune, "trial", trial)
    return calls


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_trial_picks_the_faster_of_two_fake_modes() -> None:
    clock, cost, runs = FakeClock(), {FP32: 0.030, BF16: 0.020}, []

    def make(mode: Mode):
        def step() -> None:
            runs.append(mode)
            clock.now += cost[mode] + (0.5 if len(runs) <= 2 else 0.0)  # the first "compiles"
        return step

    ms = autotune.trial([FP32, BF16], make, warmup=2, rounds=5, clock=clock)
    assert ms == pytest.approx({"eager fp32": 30.0, "eager bf16": 20.0})
    assert runs == [FP32, FP32, BF16, BF16] + [FP32, BF16] * 5  # warm-ups, then interleaved


@pytest.mark.parametrize("winner", ["eager fp32", "eager bf16"])
def test_learner_keeps_the_fastest_and_learns_what_the_winner_alone_would(
        monkeypatch: pytest.MonkeyPatch, tune_on: Path, winner: str) -> None:
    """The trial runs on copies: the tuned run's weights and optimizer state are
    bit-identical to a run with the winning mode given explicitly."""
    calls = fake_ms(monkeypatch, {"eager fp32": 30.0 if winner != "eager fp32" else 10.0,
                                  "eager bf16": 20.0})
    tuned = learner()
    assert tuned.tuning and tuned.mode == "auto (eager fp32 | eager bf16)" and tuned.warming_up
    explicit = learner(compile="false", precision=winner.split()[1])
    assert not explicit.tuning
    for k in range(4):
        a, b = tuned.update(batch(k)), explicit.update(batch(k))
        assert a.loss == b.loss
    assert calls == [1] and tuned.mode == winner and not tuned.tuning
    for (ka, va), (kb, vb) in zip(tuned.state_dict()["online"].items(),
                                  explicit.state_dict()["online"].items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    sa, sb = tuned.optimizer.state_dict()["state"], explicit.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    events = tuned.pop_events()
    assert len(events) == 1 and f"{winner} chosen" in events[0]
    assert "eager fp32 " in events[0] and "python -m wnrl.autotune --clear" in events[0]
    entry = next(iter(json.loads(tune_on.read_text())["entries"].values()))
    assert entry["mode"] == winner and entry["what"]["batch_size"] == 16


def test_a_second_run_reads_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_ms(monkeypatch, {"eager fp32": 30.0, "eager bf16": 20.0})
    learner().update(batch(0))
    second = learner()
    assert not second.tuning and second.mode == "eager bf16"
    assert any("eager bf16, the fastest here when measured (eager fp32 30.0 ms, eager bf16 "
               "20.0 ms" in n for n in second.notes)
    second.update(batch(0))
    assert calls == [1] and second.pop_events() == []
    # another batch size or network is another key: measured again
    torch.manual_seed(0)
    Learner(make_q_network((6,), 3, norm="none", hidden_sizes=(32, 32)),
            LearnerConfig(device="cpu", batch_size=16)).update(batch(0))
    Learner(make_q_network((6,), 3, norm="weight", hidden_sizes=(32, 32)),
            LearnerConfig(device="cpu", batch_size=8)).update(batch(0, b=8))
    assert calls == [1, 1, 1]


def test_learners_built_before_the_first_trial_take_its_choice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two learners of one key built before either updates (a benchmark's bound and its
    end-to-end run): the first to update measures, the other takes that choice instead of
    measuring again, so both run one mode and the cache keeps the first measurement."""
    calls = fake_ms(monkeypatch, {"eager fp32": 30.0, "eager bf16": 20.0})
    first, second = learner(), learner()
    assert first.tuning and second.tuning
    first.update(batch(0))
    fake_ms(monkeypatch, {"eager fp32": 10.0, "eager bf16": 20.0})  # would pick fp32
    second.update(batch(0))
    assert calls == [1] and first.mode == second.mode == "eager bf16"
    events = second.pop_events()
    assert len(events) == 1 and "eager bf16, measured meanwhile by another learner" in events[0]
    assert not learner().tuning and learner().mode == "eager bf16"


def test_a_corrupt_cache_is_ignored_in_one_line_and_rewritten(
        monkeypatch: pytest.MonkeyPatch, tune_on: Path) -> None:
    tune_on.parent.mkdir(parents=True)
    tune_on.write_text('{"format": 1, "entries": {"x": ')
    calls = fake_ms(monkeypatch, {"eager fp32": 10.0, "eager bf16": 20.0})
    tuned = learner()
    assert tuned.tuning
    notes = [n for n in tuned.notes if "unreadable" in n]
    assert len(notes) == 1 and str(tune_on) in notes[0] and "will be rewritten" in notes[0]
    tuned.update(batch(0))
    assert calls == [1] and tuned.mode == "eager fp32"
    data = json.loads(tune_on.read_text())
    assert data["format"] == 1 and [e["mode"] for e in data["entries"].values()] == ["eager fp32"]
    assert not learner().tuning  # and read back


def test_explicit_values_are_never_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real candidates
    cpu = torch.device("cpu")
    assert autotune.candidates(LearnerConfig(compile="false", precision="fp32"), cpu) == [FP32]
    assert autotune.candidates(LearnerConfig(compile="false", precision="bf16"), cpu) == [BF16]
    auto = autotune.candidates(LearnerConfig(compile="auto", precision="fp32"), cpu)
    assert FP32 in auto and all(m.precision == "fp32" and not m.graphed for m in auto)
    monkeypatch.setenv("WNRL_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "trial", lambda *a, **k: pytest.fail("no trial"))
    explicit = Learner(make_q_network((6,), 3), LearnerConfig(compile="false",
                                                              precision="bf16"))
    assert not explicit.tuning and explicit.mode == "eager bf16"
    explicit.update(batch(0))


def test_trial_off_follows_the_fixed_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WNRL_AUTOTUNE", "0")
    tuned = learner()
    assert not tuned.tuning and tuned.mode == autotune.fixed_mode(tuned.cfg, tuned.device).name


def test_cache_location_and_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("WNRL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert autotune.cache_dir() == tmp_path / "xdg" / "wnrl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert autotune.cache_dir() == tmp_path / "home" / ".cache" / "wnrl"
    monkeypatch.setenv("WNRL_CACHE_DIR", str(tmp_path / "own"))
    fake_ms(monkeypatch, {"eager fp32": 10.0, "eager bf16": 20.0})
    learner().update(batch(0))
    assert autotune.main([]) == 0
    out = capsys.readouterr().out
    assert "eager fp32: eager fp32 10.0 ms, eager bf16 20.0 ms per update" in out
    assert autotune.main(["--clear"]) == 0
    assert not (tmp_path / "own" / "autotune.json").exists()
    assert learner().tuning  # measured again
