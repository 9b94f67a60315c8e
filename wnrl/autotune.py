"""`auto` learner modes chosen by measuring them on this machine, once, then cached.

When `learner.compile` or `learner.precision` is `auto` and more than one mode could
run here (`candidates`: compiled or eager where a compiler works, bf16 or fp32 where
bf16 is native; `cuda_graph=auto` is graphed on CUDA, a known 3.5-4.5x win that is not
worth a trial's compiles), the learner's first update
runs a short `trial`: one copy of the learner per mode (deep copies of its networks and
optimizer: the real learner is never touched, so what it learns does not depend on the
trial), `WARMUP` updates each (the first compiles), then `ROUNDS` rounds of one timed
update per mode, interleaved so that the machine's drift hits every mode alike; the
median wins. The choice is cached (`ModeCache`) per machine (CPU model and flags, or GPU
name), torch version and threads, network (architecture and shapes), batch size and
learner settings that change the update's cost, so later runs skip the trial, and a
learner built before the first measurement takes its choice at its first update (one
mode per key, even for two learners of one process).

The cache lives in `$WNRL_CACHE_DIR`, else `$XDG_CACHE_HOME/wnrl`, else `~/.cache/wnrl`:

    python -m wnrl.autotune            # list the cached choices
    python -m wnrl.autotune --clear    # forget them: the next run measures again

`WNRL_AUTOTUNE=0` turns the trial off: `auto` then follows the fixed rule of
`wnrl.accel` (compiled where a compiler works, bf16 where native, graphed on CUDA).
Explicit values (`true`, `false`, `fp32`, `bf16`) are never overridden.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wnrl.accel import (
    _cpu_flags,
    compiler_available,
    native_bf16,
    resolve_compile,
    resolve_cuda_graph,
    resolve_precision,
)
from wnrl.atomic import write_text
from wnrl.config import LearnerConfig

WARMUP, ROUNDS = 2, 5  # updates per mode before timing (the first compiles); timed rounds
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Mode:
    """One way to run the update, as `Learner.mode` names it."""

    compiled: bool
    precision: str  # "fp32" | "bf16"
    graphed: bool = False

    @property
    def name(self) -> str:
        return f"{'compiled' if self.compiled else 'eager'} {self.precision}" \
            + (" graph" if self.graphed else "")

    def config(self) -> dict[str, str]:
        """The explicit `LearnerConfig` values of this mode."""
        return {"compile": str(self.compiled).lower(), "precision": self.precision,
                "cuda_graph": str(self.graphed).lower()}


def enabled() -> bool:
    """False when `WNRL_AUTOTUNE` is 0, off, false or no."""
    return os.environ.get("WNRL_AUTOTUNE", "1").strip().lower() not in ("0", "off", "false",
                                                                         "no")


def fixed_mode(cfg: LearnerConfig, device: torch.device) -> Mode:
    """The mode `auto` means without a trial (`wnrl.accel`'s rule); explicit values as given."""
    return Mode(resolve_compile(cfg.compile, device)[0], resolve_precision(cfg.precision,
                                                                           device)[0],
                resolve_cuda_graph(cfg.cuda_graph, device))


def candidates(cfg: LearnerConfig, device: torch.device) -> list[Mode]:
    """The modes a trial compares: `compile` and `precision` at `auto` over what can run
    natively on `device`, explicit fields as given, `cuda_graph=auto` as `wnrl.accel`
    resolves it (on CUDA). One mode means there is nothing to measure."""
    fixed = fixed_mode(cfg, device)
    compiles = [False, True] if cfg.compile == "auto" and compiler_available(device) is None \
        else [fixed.compiled]
    precisions = ["fp32", "bf16"] if cfg.precision == "auto" and native_bf16(device) \
        else [fixed.precision]
    # A graphed update is 3.5-4.5x an ungraphed one on a GPU (docs/gpu.md): `cuda_graph=auto`
    # is not put to the trial, which would compile twice as many modes for a known loser.
    graphs = [fixed.graphed]
    return [Mode(c, p, g) for g in graphs for c in compiles for p in precisions]


def trial(modes: Sequence[Mode], make: Callable[[Mode], Callable[[], object]],
          warmup: int = WARMUP, rounds: int = ROUNDS,
          clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Milliseconds per update of each mode: `make(mode)` gives a function doing one update
    (on a copy); each is called `warmup` times untimed, then once per round, the modes
    interleaved; the median of the rounds."""
    steps = {}
    for mode in modes:
        steps[mode] = make(mode)
        for _ in range(warmup):
            steps[mode]()
    times: dict[Mode, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            start = clock()
            steps[mode]()
            times[mode].append(clock() - start)
    return {m.name: 1000 * statistics.median(t) for m, t in times.items()}


# ---- the cache --------------------------------------------------------------------------

def cache_dir() -> Path:
    """`$WNRL_CACHE_DIR`, else `$XDG_CACHE_HOME/wnrl`, else `~/.cache/wnrl`."""
    if os.environ.get("WNRL_CACHE_DIR"):
        return Path(os.environ["WNRL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wnrl"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def machine(device: torch.device) -> str:
    """The hardware the timings hold for: GPU name and capability, or CPU model, a digest
    of its flags, and its core count."""
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm{cap[0]}{cap[1]})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} [flags {_digest(sorted(_cpu_flags()))}] x{os.cpu_count()}"


def cache_key(device: torch.device, network: nn.Module, cfg: LearnerConfig,
              modes: Sequence[Mode]) -> tuple[str, dict[str, Any]]:
    """(key, what it stands for): machine, torch version and threads, network architecture
    and parameter shapes, batch size, the settings that change an update's cost, and the
    modes compared."""
    arch = [type(m).__name__ for m in network.modules()]
    shapes = [[k, list(v.shape), str(v.dtype)] for k, v in network.state_dict().items()]
    what = {"machine": machine(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device.type,
            "network": f"{type(network).__name__} {_digest([arch, shapes])}",
            "batch_size": cfg.batch_size,
            "update": [cfg.optimizer, cfg.loss, cfg.double_dqn, cfg.max_grad_norm is None],
            "modes": [m.name for m in modes]}
    return _digest(what), what


class ModeCache:
    """The cached choices, one JSON file (`cache_dir()/autotune.json`): key -> entry with
    the chosen mode's name, each mode's ms per update and what the key stands for. A file
    that cannot be read is ignored (`notes` says so in one line) and rewritten."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = cache_dir() / "autotune.json" if path is None else path
        self.notes: list[str] = []

    def entries(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != CACHE_FORMAT or not isinstance(data["entries"], dict):
                raise ValueError(f"not an autotune cache of format {CACHE_FORMAT}")
            return data["entries"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.notes.append(f"autotune cache {self.path} is unreadable "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:80]}): "
                              "ignored, it will be rewritten")
            return {}

    def choice(self, key: str, modes: Sequence[Mode]) -> tuple[Mode, dict[str, Any]] | None:
        """The cached choice of `key` (the mode, its entry) if it names one of `modes`,
        else None."""
        entry = self.entries().get(key)
        if not isinstance(entry, dict):
            return None
        mode = next((m for m in modes if m.name == entry.get("mode")), None)
        return None if mode is None else (mode, entry)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entries = self.entries()
        entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps({"format": CACHE_FORMAT, "entries": entries},
                                         indent=1) + "\n")

    def clear(self) -> bool:
        """Forget every choice; True if there was a cache file."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


@dataclass(frozen=True)
class Trial:
    """A trial to run at a learner's first update: the modes and the cache key."""

    modes: tuple[Mode, ...]
    key: str
    what: dict[str, Any]


def plan(cfg: LearnerConfig, device: torch.device,
         network: nn.Module) -> tuple[Mode, Trial | None, list[str]]:
    """(the mode a learner starts in, the trial its first update runs or None, notes for
    the log). No trial when it is off, when only one mode can run, or when the choice is
    cached (a note says which, with its timings)."""
    modes = candidates(cfg, device) if enabled() else []
    if len(modes) < 2:
        return fixed_mode(cfg, device), None, []
    key, what = cache_key(device, network, cfg, modes)
    cache = ModeCache()
    cached = cache.choice(key, modes)
    if cached is None:
        return fixed_mode(cfg, device), Trial(tuple(modes), key, what), cache.notes
    mode, entry = cached
    return mode, None, cache.notes + [
        f"auto modes: {mode.name}, the fastest here when measured ({describe(entry['ms'])} "
        f"per update; cached in {cache.path}, clear with python -m wnrl.autotune --clear)"]


def run(plan_: Trial, learner: Any, batch: Any) -> tuple[Mode, list[str]]:
    """Run `plan_` for `learner` (a `wnrl.learner.Learner`) on its first `batch`: each mode
    on a copy built from the learner's state (`copy.deepcopy`: the learner itself is not
    touched), the global random states (torch, random, NumPy) put back after. Caches the
    fastest; returns it and the lines for the log. If the choice was cached after
    `plan` (another learner of the same key measured first, in this process or another),
    that choice is taken and nothing is measured, so every learner of one key runs one
    mode."""
    cache = ModeCache()
    if (cached := cache.choice(plan_.key, plan_.modes)) is not None:
        mode, entry = cached
        return mode, cache.notes + [
            f"auto modes: {mode.name}, measured meanwhile by another learner "
            f"({describe(entry['ms'])} per update; cached in {cache.path})"]
    start, rng = time.perf_counter(), (torch.get_rng_state(), random.getstate(),
                                       np.random.get_state())
    state = copy.deepcopy(learner.state_dict())

    def make(mode: Mode) -> Callable[[], object]:
        twin = type(learner)(copy.deepcopy(learner.online),
                             replace(learner.cfg, **mode.config()), learner.loss_fn,
                             learner.device)
        twin.load_state_dict(copy.deepcopy(state))
        return lambda: twin.update(batch)

    ms = trial(plan_.modes, make)
    torch.set_rng_state(rng[0])
    random.setstate(rng[1])
    np.random.set_state(rng[2])
    best = min(plan_.modes, key=lambda m: ms[m.name])
    cache.put(plan_.key, {"mode": best.name, "ms": ms, "what": plan_.what})
    return best, cache.notes + [
        f"auto modes measured: {describe(ms)} per update; {best.name} chosen (trial "
        f"{time.perf_counter() - start:.0f} s; cached in {cache.path}, clear with "
        "python -m wnrl.autotune --clear)"]


def describe(ms: dict[str, float]) -> str:
    """`eager fp32 52.1 ms, compiled fp32 66.3 ms`."""
    return ", ".join(f"{name} {t:.1f} ms" for name, t in ms.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wnrl.autotune",
                                description="The learner modes `auto` chose on this machine.")
    p.add_argument("--clear", action="store_true", help="forget them (the next run measures)")
    opt = p.parse_args(argv)
    cache = ModeCache()
    if opt.clear:
        print(f"cleared {cache.path}" if cache.clear() else f"no cache at {cache.path}")
        return 0
    entries = cache.entries()
    for note in cache.notes:
        print(note)
    for entry in entries.values():
        what = entry.get("what", {})
        print(f"{entry.get('mode')}: {describe(entry.get('ms', {}))} per update "
              f"(network {what.get('network')}, batch {what.get('batch_size')}, "
              f"{what.get('machine')}, torch {what.get('torch')}, "
              f"{what.get('threads')} threads)")
    print(f"{len(entries)} cached choices in {cache.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
