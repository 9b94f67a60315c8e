"""Graceful stop on SIGINT / SIGTERM.

The first signal sets a flag: the training loop finishes its current step,
writes a checkpoint, closes TensorBoard and exits 130 (SIGINT) or 143
(SIGTERM). A second signal exits at once (checkpoints are written atomically,
so an interrupted write leaves the previous checkpoint intact).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Context manager installing the handlers; `flag.requested` is the signal or None."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            print("\nsecond signal: exiting now (last checkpoint is intact)", file=sys.stderr,
                  flush=True)
            os._exit(EXIT_CODES.get(signum, 1))
        self.requested = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
              "checkpoint (send again to exit at once)", file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.requested, 0) if self.requested else 0

    def __enter__(self) -> StopFlag:
        for s in EXIT_CODES:
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
