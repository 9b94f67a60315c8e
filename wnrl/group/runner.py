"""Starting and resuming a group: K run directories, their locks, one process.

    start(config_path, overrides, force)   a group if train.seeds or a list of learner.lr
                                           is given, else wnrl.training.runner.start_run
    resume(run_dir, overrides)             the group run_dir belongs to (its group.json),
                                           else wnrl.training.runner.resume_run

As for a solo run, everything that can be refused (config, machine, every member's run
directory and lock, checkpoint compatibility) is checked before anything is written, and
every member's directory stays locked until the process ends. A group resumes from the
newest env step at which every member has a checkpoint that loads.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wnrl import checkpoint as ckpt
from wnrl.atomic import write_text
from wnrl.config import Config, build_config, load_config, to_yaml
from wnrl.errors import TrainingFailed
from wnrl.group.members import (
    group_dirs,
    is_group,
    member_configs,
    refuse_unsupported,
    split_rates,
    write_group_file,
)
from wnrl.group.parts import build_group
from wnrl.group.trainer import GroupTrainer
from wnrl.logger import RunLogger
from wnrl.rundir import RunLock, check_resume_dir, claim_run_dir, create_run_dir, run_dir_of
from wnrl.signals import StopFlag
from wnrl.training import runner as solo
from wnrl.training.parts import validate_against_machine
from wnrl.training.trainer import finished_reason


@contextmanager
def _held(locks: list[RunLock]) -> Iterator[None]:
    with ExitStack() as stack:
        for lock in locks:
            stack.enter_context(lock)
        yield


def _run(trainer: GroupTrainer, locks: list[RunLock]) -> int:
    with _held(locks), StopFlag() as stop:
        try:
            return trainer.run(stop)
        except TrainingFailed as exc:
            notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", []))
            print(f"error: {exc}{notes}", file=sys.stderr)
            return 1
        finally:
            for t in trainer.trainers:
                t.log.close()


def _release(locks: list[RunLock | None]) -> None:
    for lock in locks:
        if lock is not None:
            lock.release()


def start(config_path: str, overrides: list[str], force: bool = False,
          progress: bool | None = None) -> int:
    """Start a group when the config asks for one, else a solo run."""
    rest, rates = split_rates(list(overrides))
    cfg = load_config(config_path, rest)
    if not is_group(cfg, rates):
        return solo.start_run(config_path, rest, force=force, progress=progress)
    return start_group(cfg, rates, force=force, progress=progress)


def start_group(cfg: Config, rates: list[float] | None, force: bool = False,
                progress: bool | None = None) -> int:
    refuse_unsupported(cfg)
    cfgs = member_configs(cfg, rates)
    for c in cfgs:
        validate_against_machine(c)
    locks: list[RunLock | None] = []
    try:
        for c in cfgs:
            locks.append(claim_run_dir(run_dir_of(c), force=force))
        group = build_group(cfgs)
        made = [create_run_dir(c, force=force, lock=lock) for c, lock in zip(cfgs, locks)]
        locks = [lock for _, lock in made]
    except BaseException:
        _release(locks)
        raise
    run_dirs = [d for d, _ in made]
    write_group_file(run_dirs)
    trainer = GroupTrainer(cfgs, run_dirs, group)
    for k, (t, c) in enumerate(zip(trainer.trainers, cfgs)):
        t.log = RunLogger(t.run_dir, c.train.total_steps,
                          progress=progress if k == 0 else False)
        t.log.text("config", "```\n" + to_yaml(c) + "\n```")
        t.log.hparams(solo._hparams(c), ["episode/return", "eval/return_mean"])
        t.log.message(f"run directory: {t.run_dir}  (tensorboard --logdir {t.run_dir.parent})")
    return _run(trainer, [lock for lock in locks if lock is not None])


def _step_of(path: Path) -> int:
    m = re.search(r"(\d+)", path.name)
    return int(m.group(1)) if m else -1


def _common_checkpoints(dirs: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every member's checkpoint at the newest env step all of them have one that loads."""
    listed = [{_step_of(p): p for p in ckpt.list_checkpoints(d / "checkpoints")} for d in dirs]
    common = sorted(set.intersection(*(set(x) for x in listed)), reverse=True)
    for step in common:
        try:
            return [(x[step], ckpt.load(x[step])) for x in listed]
        except ckpt.CheckpointError:
            continue
    raise ckpt.CheckpointError(
        f"no env step at which every member of the group of {dirs[0]} has a loadable "
        f"checkpoint (members: {', '.join(d.name for d in dirs)})")


def resume(run_dir_arg: str, overrides: list[str], progress: bool | None = None) -> int:
    """Resume the group `run_dir_arg` belongs to, or the solo run."""
    run_dir = check_resume_dir(run_dir_arg)
    dirs = group_dirs(run_dir)
    if dirs is None:
        return solo.resume_run(run_dir_arg, overrides, progress=progress)
    locks: list[RunLock | None] = []
    try:
        for d in dirs:
            locks.append(RunLock.acquire(d))
        found = _common_checkpoints(dirs)
        cli = OmegaConf.from_dotlist(list(overrides)) if overrides else OmegaConf.create({})
        cfgs = [build_config((OmegaConf.create(state["config"]), f"{path}"),
                             (cli, "command-line overrides")) for path, state in found]
        done = [finished_reason(c, state) for c, (_, state) in zip(cfgs, found)]
        if all(reason is not None for reason in done):  # nothing to do: write nothing
            for d, (path, _), reason in zip(dirs, found, done):
                print(f"run {d} is finished: {reason}; its final checkpoint is {path}")
            _release(locks)
            return 0
        refuse_unsupported(cfgs[0])
        for c in cfgs:
            validate_against_machine(c)
        group = build_group(cfgs)
        trainer = GroupTrainer(cfgs, dirs, group)
        step = int(found[0][1]["env_steps"])
        notes = []
        for k, (path, state) in enumerate(found):
            with trainer.member(k) as t:
                notes.append(t.restore(state, str(path)))
        trainer.sync_weights()
        if overrides:
            for d, c in zip(dirs, cfgs):
                write_text(d / "config.yaml", to_yaml(c))
        for k, (t, c) in enumerate(zip(trainer.trainers, cfgs)):
            t.log = RunLogger(t.run_dir, c.train.total_steps, start_step=step, purge=True,
                              progress=progress if k == 0 else False,
                              start_updates=group.learner.num_updates)
    except BaseException:
        _release(locks)
        raise
    for t, (path, _), member_notes in zip(trainer.trainers, found, notes):
        for note in [f"resumed {t.run_dir} from {path.name} at env step {step} (group of "
                     f"{len(dirs)})", *member_notes]:
            t.log.message(note)
    return _run(trainer, [lock for lock in locks if lock is not None])
