"""What a training loop may use of the trainer, and what a loop is.

`LoopHost` lists the trainer members the loops call (`wnrl.training.loops`,
`wnrl.training.async_loop`); `wnrl.training.trainer.Trainer` and Ape-X's
`ApexTrainer` fit it structurally. The loops depend on this contract, not on
the trainer's module, so the trainer can pick its loop without an import
circle (the import graph, type-only imports included, is checked in
tests/test_imports.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from wnrl.config import Config
from wnrl.core.types import Episode, Transition
from wnrl.errors import TrainingFailed
from wnrl.logger import RunLogger
from wnrl.signals import StopFlag
from wnrl.training.checkpointer import RunParts
from wnrl.training.schedule import Schedule


@runtime_checkable
class LoopHost(Protocol):
    """The trainer as a loop sees it (see `wnrl.training.trainer` for each member).

    Attributes a loop may set: `parts` (the async loop swaps in a locked replay for
    the run's length and restores it) and `owed_updates` (updates a stop signal left
    owed at the end-of-run catch-up).
    """

    cfg: Config
    parts: RunParts
    log: RunLogger
    schedule: Schedule
    update_base: tuple[int, int]  # (env step, update count) the replay ratio counts from
    initialized: bool
    failed: TrainingFailed | None
    owed_updates: int

    def act(self, step: int) -> tuple[Transition, list[Episode]]: ...

    def record_episodes(self, episodes: list[Episode], step: int) -> None: ...

    def reached_stop_return(self) -> bool: ...

    def initialize(self) -> None: ...

    def beta(self, step: int) -> float: ...

    def learn(self, step: int) -> None: ...

    def update_once(self, step: int, beta: float) -> bool: ...

    def periodic(self, step: int) -> None: ...


class Loop(Protocol):
    """`loop(trainer, stop) -> env step reached`: act and learn until `train.total_steps`,
    `train.stop_return` or a stop signal."""

    def __call__(self, trainer: LoopHost, stop: StopFlag) -> int: ...
