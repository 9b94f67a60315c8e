"""TensorBoard logging and terminal progress for a training run.

Scalars go to TensorBoard (torch's SummaryWriter) under groups:
`episode/` (raw game score and length), `train/` (epsilon, TD loss, mean Q,
gradient norm), `perf/` (env steps/s, updates/s), `eval/`, `noise/`.
The x axis is always env steps. On resume the writer is opened with
`purge_step` = the checkpoint's step + 1, so points logged after the checkpoint
by the interrupted run are hidden and curves continue without duplicates.

Progress: a tqdm bar on a TTY; plain log lines otherwise.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from tqdm import tqdm


class RunLogger:
    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0,
                 purge: bool = False, progress: bool | None = None,
                 start_updates: int = 0) -> None:
        # a checkpoint at step S is written after everything logged at S: purge from S + 1
        self.writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if purge else None,
                                    flush_secs=30)
        self.total_steps = total_steps
        self.returns: deque[float] = deque(maxlen=100)
        self._tty = sys.stderr.isatty() if progress is None else progress
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                         disable=not self._tty, smoothing=0.05)
        self._last_t = time.perf_counter()
        self._last_step = start_step
        self._last_updates = start_updates  # a resumed run's rates count from its checkpoint
        self._step = start_step

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), step)

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{group}/{k}", float(v), step)

    def episode(self, ret: float, length: int, step: int) -> None:
        self.returns.append(ret)
        self.writer.add_scalar("episode/return", ret, step)
        self.writer.add_scalar("episode/length", length, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)

    def hparams(self, hparams: dict[str, float | int | str | bool], metric_tags: list[str]) -> None:
        """Record the run's hyperparameters, linked to scalar tags logged during training."""
        exp, ssi, sei = hparams_summary(hparams, {t: 0.0 for t in metric_tags})
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    def progress(self, step: int, updates: int) -> dict[str, float]:
        """Advance the bar; log throughput; return the rates since the last call."""
        now = time.perf_counter()
        dt = max(now - self._last_t, 1e-9)
        rates = {"env_steps_per_s": (step - self._last_step) / dt,
                 "updates_per_s": (updates - self._last_updates) / dt}
        self.scalars("perf", rates, step)
        self._bar.update(step - self._step)
        self._bar.set_postfix(ret=f"{self.mean_return:.1f}", ups=f"{rates['updates_per_s']:.0f}",
                              refresh=False)
        if not self._tty:
            print(f"step {step}/{self.total_steps}  {rates['env_steps_per_s']:.0f} steps/s  "
                  f"{rates['updates_per_s']:.0f} updates/s  mean return {self.mean_return:.2f}",
                  flush=True)
        self._last_t, self._last_step, self._last_updates, self._step = now, step, updates, step
        return rates

    def message(self, text: str) -> None:
        if self._tty:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self._bar.close()
        self.writer.flush()
        self.writer.close()
