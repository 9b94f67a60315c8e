"""Who is in a group: seeds x learning rates, each member a solo run's config.

    seeds = parse_seeds("0-7")                      # --seeds on scripts/train.py
    overrides, lrs = split_rates(overrides)         # learner.lr=[1e-4,3e-4] on the command line
    cfgs = member_configs(cfg, lrs)                 # one solo Config per member

A member's config is exactly a solo run's (`seed` = its seed, `learner.lr` = its rate,
`train.seeds` empty, its own `train.run_name`), so its `config.yaml` and checkpoints are
those of a run trained alone. `group.json` in each member's directory names every
member's directory, so `--resume` on any one of them resumes the group.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wnrl.atomic import write_text
from wnrl.config import Config, ConfigError

GROUP_FILE = "group.json"
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(spec: str) -> list[int]:
    """`0-7` -> [0, ..., 7]; `0,3,5` -> [0, 3, 5]; ranges and lists mix (`0-3,8`)."""
    seeds: list[int] = []
    for part in spec.split(","):
        m = _RANGE.match(part.strip())
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ConfigError(f"--seeds {spec!r} is invalid: must be seeds >= 0 as a range "
                              "(0-7), a list (0,3,5) or both (0-3,8)")
        lo = int(m.group(1))
        seeds += range(lo, int(m.group(2) or lo) + 1)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {spec!r} is invalid: a seed appears twice")
    return seeds


def split_rates(overrides: list[str]) -> tuple[list[str], list[float] | None]:
    """Take a list-valued `learner.lr=[...]` out of the overrides: (the others, the rates).
    A plain `learner.lr=3e-4` stays an override (rates None)."""
    rest, rates = [], None
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "learner.lr" and value.strip().startswith("["):
            try:
                node = OmegaConf.from_dotlist([f"rates={value}"])["rates"]
                parsed = OmegaConf.to_container(node) if OmegaConf.is_list(node) else None
            except OmegaConfBaseException:
                parsed = None
            if (not isinstance(parsed, list) or not parsed or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0
                    for r in parsed) or len(set(parsed)) != len(parsed)):
                raise ConfigError(f"learner.lr={value} is invalid: must be a rate > 0 or a "
                                  "list of distinct rates > 0, e.g. learner.lr=[1e-4,3e-4]")
            rates = [float(r) for r in parsed]
        else:
            rest.append(item)
    return rest, rates


def is_group(cfg: Config, rates: list[float] | None) -> bool:
    return bool(cfg.train.seeds) or rates is not None


def _slug(cfg: Config) -> str:
    game = re.sub(r"[^A-Za-z0-9]+", "_", cfg.env.id.split("/")[-1]).strip("_").lower()
    return f"{cfg.agent}_{game}"


def member_configs(cfg: Config, rates: list[float] | None = None) -> list[Config]:
    """One solo config per member (seeds x rates, seeds outer), each with its own run name:
    `<train.run_name or agent_game>_s<seed>[_lr<rate>]_<time>` (no time when run_name is
    given)."""
    seeds = list(cfg.train.seeds) or [cfg.seed]
    lrs = rates or [cfg.learner.lr]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = []
    for seed in seeds:
        for lr in lrs:
            name = f"{cfg.train.run_name or _slug(cfg)}_s{seed}"
            if rates is not None and len(lrs) > 1:
                name += f"_lr{lr:g}"
            if not cfg.train.run_name:
                name += f"_{stamp}"
            out.append(dataclasses.replace(
                cfg, seed=seed, learner=dataclasses.replace(cfg.learner, lr=lr),
                train=dataclasses.replace(cfg.train, seeds=(), run_name=name)))
    return out


def refuse_unsupported(cfg: Config) -> None:
    """A group trains in the sync loop on one machine, to total_steps (one-line errors)."""
    if cfg.distributed.enabled:
        raise ConfigError("distributed.enabled=true cannot train a group (train.seeds or a "
                          "list of learner.lr): train the seeds as separate runs")
    if cfg.train.mode != "sync":
        raise ConfigError(f"train.mode={cfg.train.mode} cannot train a group (train.seeds or "
                          "a list of learner.lr): must be sync")
    if cfg.replay.device == "learner":
        raise ConfigError("replay.device=learner cannot train a group (train.seeds or a list "
                          "of learner.lr): its members keep host replays; use host or auto")
    if cfg.train.stop_return is not None:
        raise ConfigError("train.stop_return cannot be used with a group (train.seeds or a "
                          "list of learner.lr): its members train to train.total_steps")


def write_group_file(run_dirs: list[Path]) -> None:
    """`group.json` in every member's directory: the members' directory names."""
    text = json.dumps({"format": 1, "members": [d.name for d in run_dirs]}, indent=1) + "\n"
    for d in run_dirs:
        write_text(d / GROUP_FILE, text)


def group_dirs(run_dir: Path) -> list[Path] | None:
    """The member directories of the group `run_dir` belongs to (siblings named in its
    group.json), or None for a solo run."""
    path = run_dir / GROUP_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())["members"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"--resume: {path} is not a wnrl group file") from None
    dirs = [run_dir.parent / n for n in names]
    missing = [str(d) for d in dirs if not (d / "config.yaml").is_file()]
    if missing:
        raise ConfigError(f"--resume: the group of {run_dir} lacks member run {missing[0]}")
    return dirs
