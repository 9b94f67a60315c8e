"""Tests for wnrl.replay.n_step: n-step targets vs brute force and a hand-worked example,
window lengths and completeness."""

from __future__ import annotations

import numpy as np
import pytest

from wnrl.replay import n_step_targets
from wnrl.replay.n_step import window_complete, window_length

# Five windows of n=3 rows, rewards 1, 2, 4 each; (terminal, truncated) flags per row.
REWARDS = np.tile(np.array([1.0, 2.0, 4.0], np.float32), (5, 1))
TERM = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]], bool)
TRUNC = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], bool)


def test_n_step_targets_hand_worked():
    """gamma = 0.5: a full window 1 + 0.5*2 + 0.25*4 = 3 bootstraps with 0.5^3; a terminal
    at row 1 stops at 1 + 0.5*2 = 2 with no bootstrap; a truncation at row 0 stops at 1 and
    bootstraps with 0.5; the first stop wins over a later terminal; a row both terminal
    and truncated is terminal."""
    ret, disc, m = n_step_targets(REWARDS, TERM, TRUNC, 0.5)
    np.testing.assert_array_equal(ret, [3.0, 2.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(disc, [0.125, 0.0, 0.5, 0.5, 0.0])
    np.testing.assert_array_equal(m, [3, 2, 1, 1, 2])
    np.testing.assert_array_equal(window_length(TERM, TRUNC), m)
    assert window_length(TERM, TRUNC).dtype == np.int64


def test_window_complete_needs_the_bootstrap_row_or_a_terminal():
    first, m = np.full(5, 10), window_length(TERM, TRUNC)  # windows of row 10
    # 12 rows written: row 13 (full window) is missing; 12 (after a terminal: not needed),
    # 11 (truncations) are there
    np.testing.assert_array_equal(window_complete(first, m, TERM, 12),
                                  [False, True, True, True, True])
    np.testing.assert_array_equal(window_complete(first, m, TERM, 11),
                                  [False, True, False, False, True])
    assert window_complete(first, m, TERM, 14).all()


def _brute_n_step(r, term, trunc, gamma):
    out = []
    for i in range(len(r)):
        ret, k = 0.0, 0
        while True:
            ret += gamma**k * r[i, k]
            if term[i, k]:
                out.append((ret, 0.0, k + 1))
                break
            if trunc[i, k] or k + 1 == r.shape[1]:
                out.append((ret, gamma ** (k + 1), k + 1))
                break
            k += 1
    return np.array(out)


@pytest.mark.parametrize("n,gamma,seed", [(1, 0.99, 0), (3, 0.9, 1), (5, 0.5, 2), (10, 1.0, 3)])
def test_n_step_targets_vs_brute_force(n, gamma, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(500, n)).astype(np.float32)
    term, trunc = rng.random((500, n)) < 0.15, rng.random((500, n)) < 0.15
    ret, disc, m = n_step_targets(r, term, trunc, gamma)
    exp = _brute_n_step(r.astype(np.float64), term, trunc, gamma)
    np.testing.assert_allclose(ret, exp[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(disc, exp[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(m, exp[:, 2])
    assert ret.dtype == disc.dtype == np.float32 and m.dtype == np.int64
