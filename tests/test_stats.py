"""wnrl.stats: the IQM and the bootstrap helpers every report uses."""

from __future__ import annotations

import numpy as np
import pytest

from wnrl.stats import interval, iqm, resample


def test_iqm_by_hand() -> None:
    # 8 values: the 2 lowest and 2 highest are trimmed, the middle 4 averaged
    assert iqm([100, -50, 1, 2, 3, 4, 7, 9]) == pytest.approx((2 + 3 + 4 + 7) / 4)
    rows = np.array([[1.0, 2, 3, 4], [0, 0, 10, 10]])
    np.testing.assert_allclose(iqm(rows, axis=1), [2.5, 5.0])


def test_resample_draws_runs_with_replacement() -> None:
    x = np.arange(5.0)
    r = resample(x, np.random.default_rng(0), 200)
    assert r.shape == (200, 5) and set(np.unique(r)) <= set(x)
    assert any(len(set(row)) < 5 for row in r)  # some resample repeats a run
    curves = np.arange(12.0).reshape(3, 4)  # runs x time: whole runs are drawn
    rc = resample(curves, np.random.default_rng(1), 10)
    assert rc.shape == (10, 3, 4) and all((row[:, 1:] - row[:, :-1] == 1).all() for row in rc)


def test_interval_is_the_central_95_percent() -> None:
    samples = np.arange(1001.0)
    lo, hi = interval(samples)
    assert (lo, hi) == pytest.approx((25.0, 975.0))
    band = interval(np.stack([samples, 2 * samples], axis=1))
    np.testing.assert_allclose(band, [[25.0, 50.0], [975.0, 1950.0]])
