"""The interfaces that connect wnrl's parts, as `typing.Protocol`s.

The training loops (`wnrl.training.loops`, `wnrl.distributed.apex`) wire
an actor, a replay and a learner through these methods only; any object with them
plugs in (the single-machine `Actor`, a pool of Ray workers, a locked or sharded
replay, ...). docs/ARCHITECTURE.md prints them as `describe()` renders them, and
a test keeps the two identical.

    Actor:   step() -> (Transition, [Episode]); set_weights(weights); env_steps; epsilon
    Replay:  add(Transition); sample(B, beta) -> Batch; update_priorities(index, priority)
    Learner: update(Batch) -> UpdateMetrics; weights(device) -> folded state dict; num_updates
    Saveable: state_dict() -> dict; load_state_dict(dict)   (all three are Saveable)
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from wnrl.core.types import Batch, Episode, Transition, UpdateMetrics


@runtime_checkable
class Saveable(Protocol):
    """State to checkpoint: plain values and tensors (loadable with `weights_only`)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Actor(Saveable, Protocol):
    """Acts in its envs with the latest weights it was given; emits rows for the replay."""

    env_steps: int  # single-env steps taken so far (N per vector step)
    device: torch.device  # where it acts: Learner.weights(device) hands the weights there

    @property
    def epsilon(self) -> float: ...  # exploration rate now (mean over envs), for logs

    def step(self) -> tuple[Transition, list[Episode]]: ...  # one vector step; games that ended

    def set_weights(self, weights: dict[str, Tensor]) -> None: ...  # Learner.weights()


@runtime_checkable
class Replay(Saveable, Protocol):
    """Stores the actor's rows; samples minibatches (uniform or by priority)."""

    def add(self, transition: Transition) -> None: ...

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch: ...

    def sample_many(self, n: int, batch_size: int, beta: float = 0.4) -> list[Batch]: ...

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None: ...


@runtime_checkable
class Learner(Saveable, Protocol):
    """Turns minibatches into parameter updates; the source of the actors' weights."""

    @property
    def num_updates(self) -> int: ...

    def update(self, batch: Batch) -> UpdateMetrics: ...

    def weights(self, device: str | torch.device = "cpu") -> dict[str, Tensor]: ...  # folded


PROTOCOLS: tuple[type, ...] = (Actor, Replay, Learner, Saveable)


def members(protocol: type) -> dict[str, str]:
    """name -> signature (methods) or annotation (attributes, properties) of `protocol`'s
    own members, as source text."""
    out: dict[str, str] = {}
    for name, ann in protocol.__dict__.get("__annotations__", {}).items():
        out[name] = f": {ann}"
    for name, value in protocol.__dict__.items():
        if isinstance(value, property):
            out[name] = f" -> {inspect.signature(value.fget).return_annotation}"
        elif inspect.isfunction(value) and not name.startswith("_"):
            sig = inspect.signature(value)
            params = [f"{p.name}: {p.annotation}"
                      + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}")
                      for p in sig.parameters.values() if p.name != "self"]
            out[name] = f"({', '.join(params)}) -> {sig.return_annotation}"
    return out


def describe() -> str:
    """The protocols as the text block docs/ARCHITECTURE.md shows."""
    lines = []
    for proto in PROTOCOLS:
        bases = [b.__name__ for b in proto.__bases__ if b in PROTOCOLS]
        lines.append(f"{proto.__name__}" + (f" ({', '.join(bases)})" if bases else "") + ":")
        lines += [f"    {name}{sig}" for name, sig in members(proto).items()]
    return "\n".join(lines)
