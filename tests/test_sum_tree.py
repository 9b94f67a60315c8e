"""Tests for wnrl.sum_tree against brute-force sums and prefix sums."""

from __future__ import annotations

import numpy as np
import pytest

from wnrl.sum_tree import SumTree


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000])
def test_set_get_total_and_find_match_brute_force(size):
    rng = np.random.default_rng(size)
    tree, ref = SumTree(size), np.zeros(size)
    for _ in range(20):
        idx = rng.integers(0, size, rng.integers(1, 10))
        val = rng.exponential(size=len(idx)) * (rng.random(len(idx)) < 0.7)
        idx, first = np.unique(idx, return_index=True)
        tree.set(idx, val[first])
        ref[idx] = val[first]
        np.testing.assert_allclose(tree.total, ref.sum(), rtol=1e-12)
        np.testing.assert_array_equal(tree.get(np.arange(size)), ref)
        if ref.sum() == 0:
            continue
        mass = rng.random(200) * ref.sum()
        found = tree.find(mass)
        expect = np.searchsorted(np.cumsum(ref), mass, side="right")
        np.testing.assert_array_equal(found, expect)
        assert (ref[found] > 0).all()


def test_find_never_returns_empty_leaves_at_boundaries():
    tree = SumTree(8)
    tree.set(np.array([1, 2, 6]), np.array([0.1, 0.2, 0.3]))
    edges = np.array([0.0, 0.1, 0.3, 0.6, np.nextafter(0.6, 0), 0.6, 1.0])
    assert set(tree.find(edges).tolist()) <= {1, 2, 6}
    assert tree.find(np.array([0.0]))[0] == 1 and tree.find(np.array([0.65]))[0] == 6


def test_load_rebuilds_and_validates():
    leaves = np.arange(5, dtype=np.float64)
    tree = SumTree(5)
    tree.load(leaves)
    assert tree.total == 10.0 and tree.nbytes == 16 * 8
    tree.set(np.array([4]), 0.5)
    assert tree.total == 6.5
    np.testing.assert_array_equal(tree.leaves, [0, 1, 2, 3, 0.5])
    with pytest.raises(ValueError):
        tree.load(np.ones(4))
    with pytest.raises(ValueError, match=">= 0"):
        tree.set(np.array([0]), -1.0)
    with pytest.raises(ValueError):
        SumTree(0)
