"""One writer per run directory: the lock refuses a second holder, names it, writes
nothing for the refused one, and is gone when its holder releases it or dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wnrl.rundir import LOCK_NAME, RunLock, RunLockedError
from wnrl.training.runner import resume_run, start_run

CONFIG = str(Path(__file__).parents[1] / "configs" / "cartpole_dqn.yaml")


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    lock = RunLock.acquire(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(RunLockedError, match=f"{tmp_path} is in use: process {os.getpid()}"):
        RunLock.acquire(tmp_path)
    lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # a clean release empties it
    RunLock.acquire(tmp_path).release()


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    code = (f"import os, sys; from wnrl.rundir import RunLock; RunLock.acquire({str(tmp_path)!r});"
            "print('locked', flush=True); sys.stdin.read(); os._exit(0)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
        RunLock.acquire(tmp_path)
    holder.kill()
    holder.wait()
    RunLock.acquire(tmp_path).release()  # SIGKILL left no stale lock (only a stale PID)


def test_train_force_and_resume_of_a_locked_run_write_nothing(tmp_path: Path) -> None:
    ov = [f"train.runs_dir={tmp_path}", "train.run_name=r", "train.total_steps=300",
          "train.learning_starts=200", "train.noise_period=0"]
    assert start_run(CONFIG, ov, progress=False) == 0
    run = tmp_path / "r"
    held = RunLock.acquire(run)  # stands for a live training process
    before = _files(run)
    with pytest.raises(RunLockedError, match="in use"):
        start_run(CONFIG, ov, force=True, progress=False)
    with pytest.raises(RunLockedError, match="in use"):
        resume_run(str(run), ["train.total_steps=400"], progress=False)
    assert _files(run) == before and not list(run.glob("previous-*"))
    held.release()
    assert resume_run(str(run), ["train.total_steps=400"], progress=False) == 0
    assert (run / LOCK_NAME).read_text() == ""  # released at the end of the run
