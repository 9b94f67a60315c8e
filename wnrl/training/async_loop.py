"""The async training loop (`train.mode=async`): actor and learner run concurrently.

The actor runs in the calling (main) thread: it steps the vector env (whose
C++ workers release the GIL, so env stepping overlaps the learner's torch
kernels), adds rows to the replay, logs episodes and does the periodic work
(logs, evaluation, noise diagnostics, checkpoints) of `Trainer.periodic`. The
learner runs in a daemon thread doing `Trainer.update_once` one update at a
time. A `BlockingRateLimiter` keeps learner updates per env step at
`train.updates_per_step` within `train.async_tolerance` (plus one vector step
of slack), whichever side is slower, so results do not depend on speed:

- the learner may never run ahead of `(steps - learning start) * ratio`;
- the actor may run ahead of the learner by at most the tolerance, capped at
  `AHEAD_VECTOR_STEPS` vector steps (the band absorbs jitter; uncapped, a
  slower learner would hold the ratio at the band's bottom): so the ratio
  converges to the target, and is logged as `perf/replay_ratio`.

Shared state and who guards it:

- the replay: `LockedReplay` puts `add`, `sample` and `update_priorities` under
  one lock (sampling copies its batch out, so the update runs unlocked);
- the actor's folded weights: the learner folds (`Learner.weights`) in its
  own thread and leaves the copy in a slot; the actor loads it before its next
  step, so acting never sees half-written weights. While the slot is still
  full, a due sync waits for the next update (no fold the actor would skip);
- the learner itself (networks, optimizer, counters): the learner thread
  holds `learn_lock` during each update; the main thread takes it for the
  data-dependent init and for periodic work (checkpoints, evaluation), so a
  checkpoint holds a consistent learner, replay and actor.

Failures: the learner records its error while it still holds `learn_lock`
(and `Trainer.fail` marks the run), so no checkpoint is taken after it; if both
threads fail, the learner's error is raised with the actor's as a note.

At the natural end the learner catches up to the updates the last steps made
due (`_drain`), logging its progress; a stop signal cuts the catch-up short,
and the checkpoint records what is owed (a `--resume` does it).

Unlike the sync loop, async runs are not bit-for-bit deterministic: which
batch an update samples depends on thread timing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace

from torch import Tensor

from wnrl.errors import TrainingFailed
from wnrl.rate_limiter import BlockingRateLimiter, RateLimiter
from wnrl.replay.locked import LockedReplay
from wnrl.signals import StopFlag
from wnrl.training.loop_api import LoopHost

DRAIN_LOG_S = 10.0  # seconds between progress lines of the end-of-run catch-up
AHEAD_VECTOR_STEPS = 8  # the most vector steps the actor may run ahead within the band
HISTORY_LEN = 10_000  # (steps, updates) pairs kept in `AsyncLoop.history`


class AsyncLoop:
    """One async run of a trainer (`LoopHost`; see the module doc); `run()` returns the env step.

    `history` keeps (env steps since learning start, updates since it) after every
    actor step and update, for tests and diagnostics: the last `HISTORY_LEN` only (a
    list of 200k pairs was ~8 MiB of RSS growth per 100k env steps in the soak test).
    """

    def __init__(self, trainer: LoopHost, stop: StopFlag, poll_s: float = 0.1,
                 drain_log_s: float | None = None) -> None:
        self.t, self.stop, self.poll_s = trainer, stop, poll_s
        self.drain_log_s = DRAIN_LOG_S if drain_log_s is None else drain_log_s
        cfg = trainer.cfg
        self.base_step, self.base_updates = trainer.update_base
        self.num_envs = trainer.parts.actor.num_envs
        rule = RateLimiter(ratio=cfg.train.updates_per_step,
                           tolerance=cfg.train.async_tolerance,
                           start_step=self.base_step, slack_steps=self.num_envs,
                           max_ahead_steps=AHEAD_VECTOR_STEPS * self.num_envs)
        self.limiter = BlockingRateLimiter(
            rule, steps=trainer.parts.actor.env_steps,
            updates=trainer.parts.learner.num_updates - self.base_updates)
        self.learn_lock = threading.Lock()
        self._pause = threading.Event()  # the main thread wants learn_lock
        self._weights: dict[str, Tensor] | None = None
        self._weights_lock = threading.Lock()
        self._error: BaseException | None = None
        self._drain_owed: tuple[int, int] | None = None  # (updates due, owed) at the drain
        self.history: deque[tuple[int, int]] = deque(maxlen=HISTORY_LEN)

    # ---- learner thread -----------------------------------------------------------------
    def _learner(self) -> None:
        lim, learner = self.limiter, self.t.parts.learner
        due = False  # a weight sync is due but the actor still holds the previous copy
        try:
            while not lim.stopped:
                if not lim.wait_to_update(timeout=self.poll_s):
                    continue
                while self._pause.is_set() and not lim.stopped:
                    time.sleep(0.001)
                with self.learn_lock:
                    try:
                        step = lim.steps
                        due = self.t.update_once(step, self.t.beta(step)) or due
                        if due and self._weights is None:  # else the actor has not taken it
                            weights = learner.weights(self.t.parts.actor.device)
                            due = False
                            with self._weights_lock:
                                self._weights = weights
                    except BaseException as exc:  # recorded before the lock is released
                        self._fail(exc)
                        return
                lim.updated()
                self._record()
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Record the learner's error (re-raised in the main thread) and stop both sides."""
        self._error = exc
        self.limiter.stop()

    def _record(self) -> None:
        lim = self.limiter
        self.history.append((lim.steps - self.base_step, lim.updates))

    # ---- main thread --------------------------------------------------------------------
    def _paused(self) -> _Paused:
        return _Paused(self)

    def _load_weights(self) -> None:
        with self._weights_lock:
            weights, self._weights = self._weights, None
        if weights is not None:
            self.t.parts.actor.set_weights(weights)

    def run(self) -> int:
        """Act until total_steps, `train.stop_return`, a stop signal or a learner error;
        returns the env step."""
        t, lim = self.t, self.limiter
        parts = t.parts
        t.parts = replace(parts, replay=LockedReplay(parts.replay))
        learner = threading.Thread(target=self._learner, name="wnrl-learner", daemon=True)
        learner.start()
        actor, total = t.parts.actor, t.cfg.train.total_steps
        step = actor.env_steps
        main_error: BaseException | None = None
        try:
            while (step < total and self.stop.requested is None and not lim.stopped
                   and not t.reached_stop_return()):
                if not lim.wait_to_act(self.num_envs, timeout=self.poll_s):
                    continue
                self._load_weights()
                transition, episodes = t.act(step)
                t.parts.replay.add(transition)
                step = actor.env_steps
                t.record_episodes(episodes, step)
                if not t.initialized and step >= self.base_step:
                    with self._paused():
                        if self._error is None:
                            t.initialize()
                lim.acted(self.num_envs)
                self._record()
                if t.schedule.due(step):
                    with self._paused():
                        if self._error is None:  # never checkpoint after a learner failure
                            t.log.scalar("perf/replay_ratio", self.ratio(), step)
                            t.periodic(step)
            if self._error is None:
                self._drain()
        except BaseException as exc:
            main_error = exc
        finally:
            lim.stop()
            learner.join()
            t.parts = parts
        self._raise_errors(main_error)
        if self._drain_owed is not None:  # counted now that the learner has stopped
            due, owed = self._drain_owed
            t.owed_updates = max(0, due - lim.updates)
            if t.owed_updates:
                t.log.message(f"catch-up stopped by a signal with {t.owed_updates}/{owed} "
                              "updates still owed")
        self._load_weights()
        return step

    def _raise_errors(self, main_error: BaseException | None) -> None:
        """Raise an unexpected error (a bug: the learner's first) or else the run's first
        failure, with the other thread's error, if any, as a note: neither is lost."""
        errors = {id(e): (e, side) for e, side in ((self._error, "learner"),
                                                   (main_error, "actor")) if e is not None}
        if not errors:
            return
        bugs = [e for e, _ in errors.values() if not isinstance(e, TrainingFailed)]
        first = bugs[0] if bugs else errors.get(id(self.t.failed), next(iter(errors.values())))[0]
        for e, side in errors.values():
            if e is not first:
                brief = str(e).split("; ")[0][:200]
                first.add_note(f"the {side} thread failed too: {type(e).__name__}: {brief}")
        raise first

    def _drain(self) -> None:
        """At the natural end, let the learner reach the updates the last steps made due,
        logging progress; a stop signal ends it at once (`Trainer.owed_updates` says what
        is left for a `--resume`)."""
        lim, t = self.limiter, self.t
        due = int(lim.rule.target_updates(lim.steps))
        owed = due - lim.updates
        self._drain_owed = (due, owed)
        if owed <= 0 or self.stop.requested is not None:
            return
        t.log.message(f"end of run: the learner catches up {owed} updates "
                      f"(replay ratio {self.ratio():.3f} of {lim.rule.ratio})")
        next_log = time.monotonic() + self.drain_log_s
        while (not lim.wait_for_updates(due, timeout=self.poll_s) and self._error is None
               and self.stop.requested is None and not lim.stopped):
            if time.monotonic() >= next_log:
                next_log += self.drain_log_s
                t.log.message(f"catch-up: {owed - (due - lim.updates)}/{owed} updates done")

    def ratio(self) -> float:
        """Updates per env step since the learning start so far (0 before it)."""
        steps = self.limiter.steps - self.base_step
        return self.limiter.updates / steps if steps > 0 else 0.0


class _Paused:
    """Context: the learner finishes its update and waits while the main thread works."""

    def __init__(self, loop: AsyncLoop) -> None:
        self.loop = loop

    def __enter__(self) -> None:
        self.loop._pause.set()
        self.loop.learn_lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.loop.learn_lock.release()
        self.loop._pause.clear()


def async_loop(trainer: LoopHost, stop: StopFlag) -> int:
    """`train.mode=async`: run `trainer` with concurrent actor and learner threads."""
    return AsyncLoop(trainer, stop).run()
