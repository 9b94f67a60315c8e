"""Periodic work by env step: logging, evaluation, noise diagnostics, checkpoints.

    schedule = Schedule({"log": 2000, "eval": 50_000, "noise": None, "checkpoint": 50_000})
    if schedule.take("eval", step): ...      # due at `step`: True once, then the next one

A period of None or 0 never comes due. `take` moves a job to its next time by one
period; a job with `catch_up=False` ("log") skips the times a long step jumped
over instead, so one late step does not log twice. `restart_after(step)` puts
every job at its first multiple of the period after `step` (a resumed run).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


class Schedule:
    """Next due env step of each named periodic job."""

    def __init__(self, periods: Mapping[str, int | None], no_catch_up: Iterable[str] = (),
                 after: int = 0) -> None:
        self.periods = {k: (p or None) for k, p in periods.items()}
        self.no_catch_up = frozenset(no_catch_up)
        self.next: dict[str, float] = {}
        self.restart_after(after)

    def restart_after(self, step: int) -> None:
        """Every job at the first multiple of its period after `step`."""
        self.next = {k: math.inf if p is None else (step // p + 1) * p
                     for k, p in self.periods.items()}

    def due(self, step: int, job: str | None = None) -> bool:
        """Whether `job` (default: any job) is due at `step`; nothing is taken."""
        if job is not None:
            return step >= self.next[job]
        return step >= min(self.next.values(), default=math.inf)

    def take(self, job: str, step: int) -> bool:
        """True if `job` is due at `step`, and then schedule its next time."""
        if step < self.next[job]:
            return False
        period = self.periods[job]
        assert period is not None
        skipped = (step - self.next[job]) // period if job in self.no_catch_up else 0
        self.next[job] += period * (1 + skipped)
        return True
