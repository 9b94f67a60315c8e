"""One home for wall-clock timing: medians and interleaved comparisons.

Shared machines are noisy, so comparisons time their candidates in turns
(A, B, C, A, B, C, ...) and take medians over the rounds (`interleaved`).
Functions timed on CUDA must end with a device-to-host copy so the work is done
when they return.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in seconds over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mean_time(fn: Callable[[], object], n: int) -> float:
    """Mean seconds per call of `fn` over `n` calls (after one warm-up call)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def interleaved(fns: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Median over `repeats` rounds of each function's `mean_time` over `n` calls, the
    functions taking turns within each round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(mean_time(fn, n))
    return {k: statistics.median(v) for k, v in times.items()}
