"""Rate limiter: keeps the replay ratio (learner updates per env step) on target
whichever side, actor or learner, is faster.

The target number of updates after `steps` env steps is
`(steps - start_step) * ratio` (zero before `start_step`, the learning
start). The actor may run ahead of the target by at most `tolerance` of it
(plus one actor batch of slack), and the learner may not run ahead of it at
all; so at any moment `updates / (steps - start)` lies within
`ratio * (1 ± tolerance)` once past the first few updates, and results do not
depend on which side is faster.

`RateLimiter` is the pure rule; `BlockingRateLimiter` adds a condition
variable for threads (the async mode). The distributed learner uses the pure
rule with counts gathered from its actors.

The tolerance band absorbs jitter, not a standing offset: if the actor, free
to run `tolerance` ahead, is always stopped at the band's edge because the
learner is the slower side, the ratio would sit at `ratio * (1 - tolerance)`.
So `BlockingRateLimiter` lets the actor use the band (`burst`) only while the
learner keeps up: once the actor reaches the band's edge it waits at the
target (one vector step of slack) until the learner next runs out of work.
The ratio is then held at the target on average whichever side is slower.
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

    def target_updates(self, steps: int) -> float:
        return max(0.0, (steps - self.start_step) * self.ratio)

    def can_update(self, steps: int, updates: int) -> bool:
        """The learner may do update number `updates + 1`."""
        return updates + 1 <= self.target_updates(steps)

    def can_act(self, steps: int, updates: int, batch_steps: int = 1,
                burst: bool = True) -> bool:
        """The actor may add `batch_steps` more env steps without outrunning the learner:
        by the tolerance band (`burst`) or only by the slack (not `burst`)."""
        if steps + batch_steps <= self.start_step:
            return True
        ahead = self.target_updates(steps + batch_steps) - updates
        band = self.tolerance * max(self.target_updates(steps + batch_steps), 1.0)
        return ahead <= (band if burst else 0.0) + self.slack_steps * self.ratio + 1.0


class BlockingRateLimiter:
    """Thread-safe counts with waits; `stop()` releases every waiter."""

    def __init__(self, rule: RateLimiter, steps: int = 0, updates: int = 0) -> None:
        self.rule = rule
        self.steps, self.updates = steps, updates
        self._cv = threading.Condition()
        self._stopped = False
        self.burst = True  # the actor may use the tolerance band (see the module doc)

    def _may_act(self, batch_steps: int) -> bool:
        return self.rule.can_act(self.steps, self.updates, batch_steps, burst=self.burst)

    def wait_to_act(self, batch_steps: int, timeout: float | None = None) -> bool:
        """Block until the actor may add `batch_steps`; False if stopped or timed out."""
        with self._cv:
            if self.burst and not self._stopped and not self._may_act(batch_steps):
                self.burst = False  # at the band's edge: the learner is the slower side
            ok = self._cv.wait_for(lambda: self._stopped or self._may_act(batch_steps), timeout)
            return bool(ok) and not self._stopped

    def wait_to_update(self, timeout: float | None = None) -> bool:
        with self._cv:
            if not self.burst and not self.rule.can_update(self.steps, self.updates):
                self.burst = True  # the learner caught up and waits: the band is free again
                self._cv.notify_all()
            ok = self._cv.wait_for(lambda: self._stopped or self.rule.can_update(
                self.steps, self.updates), timeout)
            return bool(ok) and not self._stopped

    def wait_for_updates(self, updates: int, timeout: float | None = None) -> bool:
        """Block until `updates` updates are done; False if stopped or timed out."""
        with self._cv:
            ok = self._cv.wait_for(lambda: self._stopped or self.updates >= updates, timeout)
            return bool(ok) and self.updates >= updates

    def acted(self, batch_steps: int) -> None:
        with self._cv:
            self.steps += batch_steps
            self._cv.notify_all()

    def updated(self, n: int = 1) -> None:
        with self._cv:
            self.updates += n
            self._cv.notify_all()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped
