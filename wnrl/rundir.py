"""Run directories: `runs/<agent>_<game>_s<seed>_<timestamp>/` with config.yaml,
TensorBoard events and `checkpoints/`. An existing run is never overwritten.

One writer per run: a train or resume process holds an exclusive `fcntl.flock`
on `<run>/wnrl.lock` for its whole life (`RunLock`). The kernel drops the lock
when the process dies, however it dies, so a killed run never leaves a stale
lock; a second train, `--resume` or `--force` on a locked run is refused
before it writes anything. The holder writes its PID into the file for the
refusal message and empties it again on a clean release.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path

from wnrl.atomic import write_text
from wnrl.config import Config, ConfigError, to_yaml

LOCK_NAME = "wnrl.lock"


class RunLockedError(ConfigError):
    """The run directory is held by another live process (one-line message)."""


class RunLock:
    """An exclusive lock on a run directory; `release()` (or process death) frees it."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir, self._fd = run_dir, fd

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike) -> RunLock:
        """Lock `run_dir` (which must exist) or raise RunLockedError naming the holder."""
        run_dir = Path(run_dir)
        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise RunLockedError(
                f"run {run_dir} is in use: {who} is training it (lock {path}); wait for it "
                "to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(run_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Empty the lock file and unlock it (idempotent)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int, wait_s: float = 1.0) -> int | None:
    """The holder's PID from the lock file (it may be a moment from writing it)."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def default_run_name(cfg: Config) -> str:
    game = re.sub(r"[^A-Za-z0-9]+", "_", cfg.env.id.split("/")[-1]).strip("_").lower()
    return f"{cfg.agent}_{game}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.train.runs_dir) / (cfg.train.run_name or default_run_name(cfg))


def _exists_error(run_dir: Path) -> ConfigError:
    return ConfigError(
        f"run directory {run_dir} already exists: use --resume {run_dir} to continue it, "
        "another train.run_name, or --force to reuse it (checkpoints are kept)")


def claim_run_dir(run_dir: Path, force: bool = False) -> RunLock | None:
    """Check, before anything is built or written, that a new run may use `run_dir`:
    refuse an existing one unless `force`; with `force`, lock it (refusing a live run)."""
    if not run_dir.exists():
        return None
    if not force:
        raise _exists_error(run_dir)
    return RunLock.acquire(run_dir)


def create_run_dir(cfg: Config, force: bool = False,
                   lock: RunLock | None = None) -> tuple[Path, RunLock]:
    """Make (or with `force` reuse) the run directory, lock it, write its config.yaml.

    An existing directory is refused unless `force`; `force` reuses it but
    never deletes anything: what was there (checkpoints, events, config) moves
    into `previous-<time>/` inside it, so the new run's curves and checkpoints
    do not mix with the old ones. `lock` is the one `claim_run_dir` took.
    """
    run_dir = run_dir_of(cfg)
    try:
        if lock is None:
            if run_dir.exists() and not force:
                raise _exists_error(run_dir)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                run_dir.mkdir()
            except FileExistsError:  # created meanwhile by another process
                if not force:
                    raise _exists_error(run_dir) from None
            lock = RunLock.acquire(run_dir)
        _set_aside(run_dir)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        write_text(run_dir / "config.yaml", to_yaml(cfg))
    except OSError as exc:
        if lock is not None:
            lock.release()
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    return run_dir, lock


def _set_aside(run_dir: Path) -> None:
    old = [p for p in run_dir.iterdir()
           if not p.name.startswith("previous-") and p.name != LOCK_NAME]
    if not old:
        return
    dest = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 0
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
    dest.mkdir()
    for p in old:
        os.replace(p, dest / p.name)


def check_resume_dir(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: run directory not found: {run_dir}")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"--resume: {run_dir} is not a wnrl run (no config.yaml)")
    return run_dir
