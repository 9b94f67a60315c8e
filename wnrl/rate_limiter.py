"""Rate limiter: keeps the replay ratio (learner updates per env step) on target
whichever side, actor or learner, is faster.

The target number of updates after `steps` env steps is
`(steps - start_step) * ratio` (zero before `start_step`, the learning
start). The actor may run ahead of the target by at most `tolerance` of it
(plus one actor batch of slack), and the learner may not run ahead of it at
all; so at any moment `updates / (steps - start)` lies within
`ratio * (1 ± tolerance)` once past the first few updates, and results do not
depend on which side is faster.

The band absorbs jitter, not a standing offset: when the learner is the
slower side the actor always waits at the band's edge, so a band of
`tolerance * target` (which grows with the run) would hold the ratio at
`ratio * (1 - tolerance)`. `max_ahead_steps` caps the band at a fixed number
of env steps (the async mode: a few vector steps), so the standing offset is
a constant number of updates and the ratio converges to the target.

`RateLimiter` is the pure rule; `BlockingRateLimiter` adds a condition
variable for threads (the async mode). The distributed learner uses the pure
rule with counts gathered from its actors (its cap leaves room for the chunks
in flight).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class RateLimiter:
    ratio: float  # target learner updates per env step
    tolerance: float  # allowed relative drift of the ratio, e.g. 0.1
    start_step: int = 0  # env steps before the first update (learning starts)
    slack_steps: int = 0  # env steps the actor may always be ahead by (one vector step)
    max_ahead_steps: int | None = None  # cap on the band, in env steps (None: no cap)

    def target_updates(self, steps: int) -> float:
        return max(0.0, (steps - self.start_step) * self.ratio)

    def can_update(self, steps: int, updates: int) -> bool:
        """The learner may do update number `updates + 1`."""
        return updates + 1 <= self.target_updates(steps)

    def can_act(self, steps: int, updates: int, batch_steps: int = 1) -> bool:
        """The actor may add `batch_steps` more env steps without outrunning the learner."""
        if steps + batch_steps <= self.start_step:
            return True
        ahead = self.target_updates(steps + batch_steps) - updates
        allowed = self.tolerance * max(self.target_updates(steps + batch_steps), 1.0)
        if self.max_ahead_steps is not None:
            allowed = min(allowed, self.max_ahead_steps * self.ratio)
        return ahead <= allowed + self.slack_steps * self.ratio + 1.0


class BlockingRateLimiter:
    """Thread-safe counts with waits; `stop()` releases every waiter."""

    def __init__(self, rule: RateLimiter, steps: int = 0, updates: int = 0) -> None:
        self.rule = rule
        self.steps, self.updates = steps, updates
        self._cv = threading.Condition()
        self._stopped = False

    def wait_to_act(self, batch_steps: int, timeout: float | None = None) -> bool:
        """Block until the actor may add `batch_steps`; False if stopped or timed out."""
        with self._cv:
            ok = self._cv.wait_for(lambda: self._stopped or self.rule.can_act(
                self.steps, self.updates, batch_steps), timeout)
            return bool(ok) and not self._stopped

    def wait_to_update(self, timeout: float | None = None) -> bool:
        with self._cv:
            ok = self._cv.wait_for(lambda: self._stopped or self.rule.can_update(
                self.steps, self.updates), timeout)
            return bool(ok) and not self._stopped

    def acted(self, batch_steps: int) -> None:
        with self._cv:
            self.steps += batch_steps
            self._cv.notify_all()

    def updated(self, n: int = 1) -> None:
        with self._cv:
            self.updates += n
            self._cv.notify_all()

    def wait_for_updates(self, updates: int, timeout: float | None = None) -> bool:
        """Block until `updates` updates are done; False if stopped or timed out."""
        with self._cv:
            ok = self._cv.wait_for(lambda: self._stopped or self.updates >= updates, timeout)
            return bool(ok) and self.updates >= updates

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped
