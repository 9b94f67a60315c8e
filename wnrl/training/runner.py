"""Starting and resuming a run: config, run directory, logger, trainer, signals.

Everything that can be refused (config, machine limits, run directory and
its lock, checkpoint compatibility) is checked before anything is written.
The run directory's lock (`wnrl.rundir.RunLock`) is held from then until the
process ends, so a run has one writer (the distributed driver included).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wnrl import checkpoint as ckpt
from wnrl.atomic import write_text
from wnrl.config import Config, ConfigError, build_config, load_config, parse_overrides, to_yaml
from wnrl.errors import TrainingFailed
from wnrl.logger import RunLogger
from wnrl.rundir import RunLock, check_resume_dir, claim_run_dir, create_run_dir, run_dir_of
from wnrl.signals import StopFlag
from wnrl.training.checkpointer import RunParts
from wnrl.training.parts import build, validate_against_machine
from wnrl.training.trainer import Trainer, finished_reason


def _hparams(cfg: Config) -> dict[str, float | int | str | bool]:
    return {"agent": cfg.agent, "env": cfg.env.id, "seed": cfg.seed, "lr": cfg.learner.lr,
            "optimizer": cfg.learner.optimizer, "batch_size": cfg.learner.batch_size,
            "gamma": cfg.learner.gamma, "n_step": cfg.replay.n_step,
            "double_dqn": cfg.learner.double_dqn, "updates_per_step": cfg.train.updates_per_step}


def _build(cfg: Config, start_step: int = 0) -> tuple[RunParts, Callable[..., Trainer]]:
    """The parts and trainer class: single-machine, or Ape-X on Ray (`distributed.enabled`;
    its workers seed their games from `start_step`, the env step a resume starts at)."""
    if not cfg.distributed.enabled:
        return build(cfg), Trainer
    try:
        from wnrl.distributed.apex import build_apex
    except ImportError as exc:
        raise ConfigError(f"distributed.enabled=true needs Ray ({exc}): "
                          "pip install 'wnrl[distributed]'") from None
    return build_apex(cfg, start_step)


def _run(trainer: Trainer, lock: RunLock) -> int:
    with lock, StopFlag() as stop:
        try:
            return trainer.run(stop)
        except TrainingFailed as exc:  # divergence, a failed env: one line, exit 1
            notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", []))
            print(f"error: {exc}{notes}", file=sys.stderr)
            return 1
        finally:
            trainer.log.close()


def start_run(config_path: str, overrides: list[str], force: bool = False,
              progress: bool | None = None) -> int:
    cfg = load_config(config_path, overrides)
    validate_against_machine(cfg)
    lock = claim_run_dir(run_dir_of(cfg), force=force)  # refuses a live run before building
    try:
        parts, trainer_cls = _build(cfg)  # refuses unknown games, replays too big, ...
        run_dir, lock = create_run_dir(cfg, force=force, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    logger = RunLogger(run_dir, cfg.train.total_steps, progress=progress)
    logger.text("config", "```\n" + to_yaml(cfg) + "\n```")
    logger.hparams(_hparams(cfg), ["episode/return", "eval/return_mean"])
    logger.message(f"run directory: {run_dir}  (tensorboard --logdir {run_dir.parent})")
    trainer = trainer_cls(cfg, run_dir, parts)
    trainer.log = logger
    return _run(trainer, lock)


def resume_config(state: dict[str, Any], source: str,
                  overrides: list[str]) -> tuple[Config, list[str]]:
    """The config a resume runs with: the checkpoint's, under the command-line overrides,
    parsed as a new run's are; and notes on what a change does. A changed
    `train.total_steps` keeps the epsilon and PER-beta schedules where they were in env
    steps (`train.schedule_steps` is set to the run's first total)."""
    saved = OmegaConf.create(state["config"])
    cli = parse_overrides(list(overrides))  # as a new run's: the same errors
    cfg = build_config((saved, source), (cli, "command-line overrides"))
    old_total = int(state["config"]["train"]["total_steps"])
    notes = []
    if cfg.train.total_steps != old_total and cfg.train.schedule_steps == 0:
        cfg = replace(cfg, train=replace(cfg.train, schedule_steps=old_total))
        notes.append(f"train.total_steps changed from {old_total} to {cfg.train.total_steps}: "
                     f"epsilon and PER beta keep their schedules over the first {old_total} env "
                     f"steps (train.schedule_steps={old_total})")
    return cfg, notes


def resume_run(run_dir_arg: str, overrides: list[str], progress: bool | None = None) -> int:
    run_dir = check_resume_dir(run_dir_arg)
    lock = RunLock.acquire(run_dir)  # refuses a run another process is training
    try:
        unreadable: dict[Path, str] = {}  # newer checkpoints skipped, and why
        path, state = ckpt.load_latest_valid(run_dir, on_skip=unreadable.__setitem__)
        skipped = [f"skipped unreadable checkpoint {p.name}: {why}"
                   for p, why in unreadable.items()]
        cfg, notes = resume_config(state, str(path), overrides)
        done = finished_reason(cfg, state)
        if done is not None:  # nothing to do: write nothing
            for note in skipped:
                print(note)
            print(f"run {run_dir} is finished: {done}; its final checkpoint is {path}")
            lock.release()
            return 0
        validate_against_machine(cfg)
        step = int(state["env_steps"])
        parts, trainer_cls = _build(cfg, start_step=step)
        trainer = trainer_cls(cfg, run_dir, parts)
        notes += trainer.restore(state, str(path))  # refuses incompatible checkpoints
        trainer.checkpointer.readable.update({path: True} | dict.fromkeys(unreadable, False))
        if overrides:
            write_text(Path(run_dir) / "config.yaml", to_yaml(cfg))
        trainer.log = RunLogger(run_dir, cfg.train.total_steps, start_step=step, purge=True,
                                progress=progress,
                                start_updates=trainer.parts.learner.num_updates)
    except BaseException:
        lock.release()
        raise
    for note in [f"resumed {run_dir} from {path.name} at env step {step}", *skipped, *notes]:
        trainer.log.message(note)
    return _run(trainer, lock)
