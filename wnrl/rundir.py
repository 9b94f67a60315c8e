"""Run directories: `runs/<agent>_<game>_s<seed>_<timestamp>/` with config.yaml,
TensorBoard events and `checkpoints/`. An existing run is never overwritten."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from wnrl.config import Config, ConfigError, to_yaml


def default_run_name(cfg: Config) -> str:
    game = re.sub(r"[^A-Za-z0-9]+", "_", cfg.env.id.split("/")[-1]).strip("_").lower()
    return f"{cfg.agent}_{game}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def create_run_dir(cfg: Config, force: bool = False) -> Path:
    """Make a new run directory and write its config.yaml.

    An existing directory is refused unless `force`; `force` reuses it but
    never deletes anything: what was there (checkpoints, events, config) moves
    into `previous-<time>/` inside it, so the new run's curves and checkpoints
    do not mix with the old ones.
    """
    run_dir = Path(cfg.train.runs_dir) / (cfg.train.run_name or default_run_name(cfg))
    if run_dir.exists() and not force:
        raise ConfigError(
            f"run directory {run_dir} already exists: use --resume {run_dir} to continue it, "
            "another train.run_name, or --force to reuse it (checkpoints are kept)"
        )
    try:
        if run_dir.exists():
            _set_aside(run_dir)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
    return run_dir


def _set_aside(run_dir: Path) -> None:
    old = [p for p in run_dir.iterdir() if not p.name.startswith("previous-")]
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
