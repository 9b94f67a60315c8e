"""wnrl.training.schedule: periodic work by env step."""

from __future__ import annotations

from wnrl.training.schedule import Schedule


def test_jobs_come_due_at_their_periods_and_off_jobs_never() -> None:
    s = Schedule({"eval": 100, "noise": None, "ckpt": 0})
    assert not s.due(99) and not s.take("eval", 99)
    assert s.due(100) and s.due(100, "eval") and not s.due(10**9, "noise")
    assert s.take("eval", 100) and not s.take("eval", 100)
    assert s.take("eval", 200)
    assert not any(s.take("noise", k) or s.take("ckpt", k) for k in (0, 10**9))


def test_catch_up_or_skip_after_a_long_step() -> None:
    s = Schedule({"log": 10, "eval": 10}, no_catch_up=("log",))
    assert s.take("log", 35) and not s.take("log", 35)  # 10, 20, 30 skipped at once
    assert s.next["log"] == 40
    assert s.take("eval", 35) and s.take("eval", 35) and s.take("eval", 35)  # each once
    assert not s.take("eval", 35)


def test_restart_after_a_resume() -> None:
    s = Schedule({"log": 400, "ckpt": 1000})
    s.restart_after(1200)
    assert s.next == {"log": 1600, "ckpt": 2000}
    assert not s.due(1599) and s.due(1600)
