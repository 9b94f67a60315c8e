"""The async loop (`train.mode=async`): replay ratio within tolerance whichever side is
slower, stop requests, checkpoints taken while the learner thread runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.test_replay import _filled
from wnrl import checkpoint as ckpt
from wnrl.config import load_config
from wnrl.logger import RunLogger
from wnrl.replay.locked import LockedReplay
from wnrl.training import Trainer, async_loop, build
from wnrl.training.async_loop import AsyncLoop

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cartpole_dqn.yaml"
RATIO, TOL, STARTS = 0.5, 0.1, 400


def make_trainer(tmp_path: Path, *extra: str) -> Trainer:
    cfg = load_config(str(CONFIG), [
        "train.mode=async", "train.total_steps=1600", f"train.learning_starts={STARTS}",
        f"train.updates_per_step={RATIO}", f"train.async_tolerance={TOL}",
        "train.noise_period=0", "train.checkpoint_period=100000", "learner.batch_size=16",
        f"train.runs_dir={tmp_path}", *extra])
    trainer = Trainer(cfg, tmp_path, build(cfg))
    trainer.log = RunLogger(tmp_path, cfg.train.total_steps, progress=False)
    return trainer


class StopAfter:
    """A StopFlag stand-in: requests a stop (SIGINT's exit code) once the actor reaches `steps`."""

    exit_code = 130

    def __init__(self, trainer: Trainer, steps: int) -> None:
        self.trainer, self.steps = trainer, steps

    @property
    def requested(self) -> int | None:
        return 2 if self.trainer.parts.actor.env_steps >= self.steps else None


class StopWhen:
    """A StopFlag stand-in: requests a stop (SIGINT) once `cond()` is true."""

    exit_code = 130

    def __init__(self, cond: Callable[[], bool]) -> None:
        self.cond = cond

    @property
    def requested(self) -> int | None:
        return 2 if self.cond() else None


def slow(obj: object, name: str, seconds: float) -> None:
    """Make `obj.name(...)` sleep `seconds` before doing its work."""
    fn = getattr(obj, name)

    def slowed(*args: object, **kwargs: object) -> object:
        time.sleep(seconds)
        return fn(*args, **kwargs)

    setattr(obj, name, slowed)


@pytest.mark.parametrize("slow_side", ["learner", "actor"])
def test_ratio_held_within_tolerance(tmp_path: Path, slow_side: str) -> None:
    trainer = make_trainer(tmp_path)
    if slow_side == "learner":
        slow(trainer.parts.learner, "update", 0.004)
    else:
        slow(trainer.parts.env, "step", 0.004)
    loop = AsyncLoop(trainer, StopAfter(trainer, 10**9))
    step = loop.run()
    assert step == 1600
    n = trainer.parts.actor.num_envs
    checked = 0
    for steps, updates in loop.history:
        target = max(0.0, steps * RATIO)
        assert updates <= target  # the learner never runs ahead
        if target >= 50:  # the actor runs ahead by at most the tolerance (+ one vector step)
            assert target - updates <= TOL * target + n * RATIO + 1
            checked += 1
    assert checked > 100
    # at the natural end the learner catches up: floor((steps - start) * ratio) updates, one
    # fewer than sync mode, which also updates at the learning start itself (test_train)
    assert trainer.parts.learner.num_updates == int((1600 - STARTS) * RATIO)
    assert not isinstance(trainer.parts.replay, LockedReplay)  # the plain replay is put back


def test_slow_learner_throttles_actor(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    slow(trainer.parts.learner, "update", 0.004)
    loop = AsyncLoop(trainer, StopAfter(trainer, 10**9))
    t0 = time.perf_counter()
    loop.run()
    # (1600 - 400) * 0.5 = 600 updates of >= 4 ms each: the actor had to wait for them
    assert time.perf_counter() - t0 >= 600 * 0.004 * (1 - TOL)


def test_stop_request_checkpoints_and_resumes(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    code = trainer.run(StopAfter(trainer, 1000))
    assert code == 130
    path, state = ckpt.load_latest_valid(tmp_path)
    assert 1000 <= state["env_steps"] < 1600
    assert state["learner"]["num_updates"] == trainer.parts.learner.num_updates > 0
    resumed = make_trainer(tmp_path / "again")
    resumed.restore(state, str(path))
    assert resumed.parts.learner.num_updates == state["learner"]["num_updates"]
    assert resumed.run(StopAfter(resumed, 10**9)) == 0
    assert resumed.parts.actor.env_steps == 1600


def test_periodic_checkpoints_while_learning(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "train.checkpoint_period=500", "train.keep_checkpoints=10")
    assert trainer.run(StopAfter(trainer, 10**9)) == 0
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == [ckpt.checkpoint_name(s) for s in (500, 1000, 1500, 1600)]
    _, state = ckpt.load_latest_valid(tmp_path)
    assert state["learner"]["num_updates"] == int((1600 - STARTS) * RATIO)


def test_learner_error_reaches_main_thread(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)

    def broken(batch: object) -> object:
        raise FloatingPointError("learner failed")

    trainer.parts.learner.update = broken  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match="learner failed"):
        AsyncLoop(trainer, StopAfter(trainer, 10**9)).run()


def test_stop_return_ends_the_run(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "train.stop_return=-1000", "train.stop_window=1")
    assert trainer.run(StopAfter(trainer, 10**9)) == 0
    assert trainer.parts.actor.env_steps < 1600 and len(trainer.recent_returns) == 1


def test_ratio_is_held_at_the_target_on_average(tmp_path: Path) -> None:
    """A slower learner does not leave the ratio at the bottom of the band (0.9 x target,
    60 updates short at 1600 steps): the actor is never more than a fixed number of vector
    steps ahead, so the shortfall stays constant and the ratio converges to the target."""
    trainer = make_trainer(tmp_path)
    slow(trainer.parts.learner, "update", 0.004)
    loop = AsyncLoop(trainer, StopAfter(trainer, 10**9))
    loop.run()
    n = trainer.parts.actor.num_envs
    bound = (async_loop.AHEAD_VECTOR_STEPS + 2) * n * RATIO + 1
    late = [(s * RATIO - u, u / (s * RATIO)) for s, u in loop.history if s >= 800 - STARTS]
    assert len(late) > 100 and max(short for short, _ in late) <= bound
    assert late[-1][1] >= 0.97


def test_signal_during_the_catch_up_checkpoints_at_once(tmp_path: Path, capsys) -> None:
    """A signal in the end-of-run catch-up (here: as the actor's last step is taken) stops
    it at once; the report and the checkpoint say what is owed, and a resume does it."""
    trainer = make_trainer(tmp_path, "replay.save_in_checkpoint=true")
    slow(trainer.parts.learner, "update", 0.03)
    assert trainer.run(StopWhen(lambda: trainer.parts.actor.env_steps >= 1600)) == 130
    out = capsys.readouterr().out
    owed = trainer.owed_updates
    assert owed > 0 and f"during the end-of-run catch-up, {owed} learner updates owed" in out
    path, state = ckpt.load_latest_valid(tmp_path)
    assert state["env_steps"] == 1600
    assert state["learner"]["num_updates"] + owed == int((1600 - STARTS) * RATIO)
    resumed = make_trainer(tmp_path / "again", "replay.save_in_checkpoint=true")
    resumed.restore(state, str(path))
    assert resumed.run(StopAfter(resumed, 10**9)) == 0
    assert resumed.parts.learner.num_updates == int((1600 - STARTS) * RATIO)
    assert "done: 1600 env steps, 600 updates" in capsys.readouterr().out


def test_catch_up_logs_progress_and_a_finished_run_is_reported_finished(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """The learner slows down near the end, so the actor ends far ahead (within the band):
    the catch-up logs its progress; a signal that arrives once all the work is done (as
    the catch-up ends) does not turn the finished run into a 'stopped, resume with' one."""
    monkeypatch.setattr(async_loop, "DRAIN_LOG_S", 0.05, raising=False)
    trainer = make_trainer(tmp_path, "train.async_tolerance=0.9")
    update = trainer.parts.learner.update

    def slow_late(batch: object) -> object:
        if trainer.parts.actor.env_steps >= 1400:
            time.sleep(0.02)
        return update(batch)

    trainer.parts.learner.update = slow_late  # type: ignore[method-assign]
    due = int((1600 - STARTS) * RATIO)
    stop = StopWhen(lambda: trainer.parts.learner.num_updates >= due)
    assert trainer.run(stop) == 0
    out = capsys.readouterr().out
    assert "end of run: the learner catches up" in out and "catch-up: " in out
    assert f"done: 1600 env steps, {due} updates" in out and "resume with" not in out


def test_when_both_threads_fail_the_learners_error_is_kept(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "train.async_tolerance=0.9")  # the actor steps on
    entered, go = threading.Event(), threading.Event()

    def broken(batch: object) -> object:
        entered.set()
        go.wait(10)
        raise FloatingPointError("learner failed")

    real_step = trainer.parts.env.step

    def env_step(actions: object) -> object:
        if entered.is_set():  # the learner is inside its (failing) update
            go.set()
            raise RuntimeError("emulator died")
        return real_step(actions)

    trainer.parts.learner.update = broken  # type: ignore[method-assign]
    trainer.parts.env.step = env_step  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match="learner failed") as info:
        AsyncLoop(trainer, StopAfter(trainer, 10**9)).run()
    assert any("actor thread failed too: EnvError" in n and "emulator died" in n
               for n in info.value.__notes__)
    assert not ckpt.list_checkpoints(tmp_path / "checkpoints")


def test_locked_sample_many_waits_for_the_lock_and_draws_what_the_buffer_draws() -> None:
    """`LockedReplay.sample_many` holds the lock for the whole run (no add can land
    between its batches) and returns the wrapped buffer's own draws."""
    inner, _ = _filled(False, seed=3)
    twin, _ = _filled(False, seed=3)
    locked = LockedReplay(inner)
    out: list = []
    with locked.lock:
        thread = threading.Thread(target=lambda: out.append(locked.sample_many(3, 8)))
        thread.start()
        thread.join(0.2)
        assert thread.is_alive() and not out  # waits while another call holds the lock
    thread.join(5)
    assert len(out) == 1 and len(out[0]) == 3
    for got, want in zip(out[0], twin.sample_many(3, 8), strict=True):
        np.testing.assert_array_equal(got.index, want.index)
        np.testing.assert_array_equal(got.obs, want.obs)
