"""Statistics of scores: the interquartile mean and percentile-bootstrap intervals.

The one home of the estimators wnrl reports (Agarwal et al. 2021, as `rliable`
computes them): evaluation's IQM (`wnrl.evaluate`), the study's intervals over
seeds (`wnrl.experiments.study`), its curves' bands (`study_plot`) and its
across-game aggregates (`study_games`).

    iqm(x)                      mean of the middle 50% (25% trimmed each side)
    resample(x, rng, reps)      float[reps, S, ...]: runs drawn with replacement
    interval(samples)           the 95% percentile interval over the first axis
    prob_greater(x, y)          P(X > Y) + P(X = Y) / 2 over all pairs of runs
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import trim_mean

CI = (2.5, 97.5)  # percentiles of a 95% interval


def iqm(x: Any, axis: int | None = None) -> Any:
    """Interquartile mean (as `rliable.metrics.aggregate_iqm`): of all of x as a float, or
    along `axis` as an array."""
    if axis is None:
        return float(trim_mean(np.asarray(x, dtype=np.float64).ravel(), 0.25))
    return trim_mean(x, 0.25, axis=axis)


def resample(x: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """`reps` bootstrap resamples of the runs x: float[S, ...] -> float[reps, S, ...]."""
    return x[rng.integers(len(x), size=(reps, len(x)))]


def interval(samples: np.ndarray) -> list[float] | np.ndarray:
    """The 95% percentile interval over axis 0: [lo, hi] of float[reps], or float[2, ...]
    of float[reps, ...]."""
    q = np.percentile(samples, CI, axis=0)
    return [float(v) for v in q] if np.ndim(samples) == 1 else q


def prob_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over all pairs of runs: x float[..., N], y float[..., M] ->
    float[...] (the Mann-Whitney U statistic divided by N*M)."""
    d = np.asarray(x)[..., :, None] - np.asarray(y)[..., None, :]
    return (d > 0).mean(axis=(-2, -1)) + 0.5 * (d == 0).mean(axis=(-2, -1))
