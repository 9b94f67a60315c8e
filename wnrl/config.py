"""Typed configuration: the schema (`wnrl.config_schema`) and loading it from YAML.

Loaded only at the edge (scripts): `load_config(yaml_path, overrides)` merges,
lowest first, the dataclass defaults, the agent recipe's defaults, the YAML
file and `key=value` overrides (OmegaConf does the parsing, merging and type
checking). A YAML file may start from others: `base: pong.yaml` (or a list,
paths relative to the file) merges those first, so a per-environment base holds
the recipe and each agent variant is a line or two (`configs/README.md`). Every
problem is raised as `ConfigError` with a one-line message naming the key.
The dataclasses are importable from here: `from wnrl.config import Config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from wnrl.config_schema import (
    ActorConfig,
    Config,
    DistributedConfig,
    EnvConfig,
    EvalConfig,
    LearnerConfig,
    NetworkConfig,
    ReplayConfig,
    TrainConfig,
)
from wnrl.errors import ConfigError, one_line

__all__ = [
    "ActorConfig",
    "Config",
    "ConfigError",
    "DistributedConfig",
    "EnvConfig",
    "EvalConfig",
    "LearnerConfig",
    "NetworkConfig",
    "ReplayConfig",
    "TrainConfig",
    "build_config",
    "from_dict",
    "load_config",
    "to_dict",
    "to_yaml",
]


def _known_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(node):
        name = f"{prefix}{f.name}"
        keys.append(name)
        default = getattr(node, f.name) if not isinstance(node, type) else None
        if dataclasses.is_dataclass(f.type) or dataclasses.is_dataclass(default):
            keys += _known_keys(default, name + ".")
    return keys


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, _known_keys(Config()), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or one_line(exc)
        hint = _did_you_mean(str(key))
        raise ConfigError(f"unknown config key '{key}' in {source}{hint}") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = getattr(exc, "msg", None) or one_line(exc)
        where = f" for '{key}'" if key else ""
        raise ConfigError(f"bad value{where} in {source}: {one_line(Exception(msg))}") from None


def parse_overrides(overrides: list[str]) -> DictConfig:
    """`key=value` strings as one config layer (ConfigError, one line, on a malformed one)."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides: {one_line(exc)}") from None


def _read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> DictConfig:
    """A YAML config file with its `base:` files merged under it (depth first)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"config file {path} is its own base: {chain}")
    try:
        data = OmegaConf.load(path)
    except Exception as exc:  # yaml errors come in several classes
        raise ConfigError(f"cannot parse config file {path}: {one_line(exc)}") from None
    if not isinstance(data, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not a list or value")
    bases = data.pop("base", None)
    if bases is None:
        return data
    names = [bases] if isinstance(bases, str) else list(bases) if OmegaConf.is_list(bases) \
        else None
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"base={bases!r} in {path} is invalid: must be a file name or a "
                          f"list of file names")
    merged = OmegaConf.create({})
    for name in names:
        merged = OmegaConf.merge(merged, _read_yaml(path.parent / name,
                                                    (*_seen, path.resolve())))
    return OmegaConf.merge(merged, data)  # type: ignore[return-value]


def build_config(*layers: tuple[Any, str]) -> Config:
    """Merge (mapping, source-name) layers over the defaults and validate."""
    merged = OmegaConf.structured(Config)
    for layer, source in layers:
        merged = _merge(merged, layer, source)
    try:
        cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid config: {one_line(exc)}") from None
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"invalid config: {one_line(exc)}") from None
    assert isinstance(cfg, Config)
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> Config:
    """Defaults < agent recipe defaults < YAML file < `key=value` overrides."""
    from wnrl.agents import get_agent  # the registry, at the edge only

    layers: list[tuple[Any, str]] = []
    if path is not None:
        layers.append((_read_yaml(Path(path)), str(path)))
    cli = parse_overrides(list(overrides))
    layers.append((cli, "command-line overrides"))
    merged = OmegaConf.structured(Config)
    for layer, source in layers:  # checks keys and types; finds the agent name
        merged = _merge(merged, layer, source)
    agent = get_agent(str(merged.agent))
    defaults = (OmegaConf.create(agent.defaults), f"agent '{agent.name}' defaults")
    return build_config(defaults, *layers)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_dict(data: dict) -> Config:
    """Rebuild a Config saved as a plain dict (e.g. inside a checkpoint)."""
    return build_config((OmegaConf.create(data), "checkpoint config"))


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]
