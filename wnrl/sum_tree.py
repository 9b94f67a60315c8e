"""A vectorized binary sum tree for proportional prioritized replay (Schaul et al. 2016).

The tree is one float64 array of `2 * base` nodes, `base` the smallest power of two
>= `size`: node 1 is the root, node `i` has children `2i` and `2i + 1`, and leaf `k`
lives at node `base + k`. Every internal node is recomputed from its two children
(never updated by deltas), so no rounding error accumulates over millions of updates.
All operations take arrays of indices and run one NumPy call per tree level.
`importance_weights` turns the probabilities of a drawn batch into its IS weights.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Non-negative leaf values with O(log n) vectorized update and prefix-sum search.

    Args:
        size: number of leaves (>= 1).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"sum tree size must be >= 1, got {size}")
        self.size = int(size)
        self._base = 1 << (self.size - 1).bit_length()
        self._depth = self._base.bit_length() - 1
        self._tree = np.zeros(2 * self._base, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._tree[1])

    @property
    def leaves(self) -> np.ndarray:
        """float64[size] view of the leaf values (read it, do not write it)."""
        return self._tree[self._base : self._base + self.size]

    @property
    def nbytes(self) -> int:
        return int(self._tree.nbytes)

    def get(self, index: np.ndarray) -> np.ndarray:
        """Leaf values: index int64[K] -> float64[K]."""
        return self._tree[self._base + np.asarray(index, dtype=np.int64)]

    def set(self, index: np.ndarray, value: np.ndarray | float) -> None:
        """Set leaves `index` (int64[K]) to `value` (float64[K] or scalar, >= 0).

        With repeated indices one of the given values wins; parents stay consistent.
        """
        node = self._base + np.asarray(index, dtype=np.int64).ravel()
        if node.size == 0:
            return
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), node.shape)
        if np.any(~(value >= 0)):
            raise ValueError("sum tree values must be finite and >= 0")
        tree = self._tree
        tree[node] = value
        for _ in range(self._depth):
            node = node >> 1
            tree[node] = tree[2 * node] + tree[2 * node + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaves holding the given prefix sums: mass float64[K] in [0, total) -> int64[K].

        The leaf `k` returned for `m` satisfies sum(leaves[:k]) <= m < sum(leaves[:k+1]),
        up to rounding. It always has a positive value when total > 0: the descent never
        enters a zero-mass subtree, even when `m` rounds to or past a boundary.
        """
        mass = np.array(mass, dtype=np.float64, copy=True).ravel()
        node = np.ones(mass.shape, dtype=np.int64)
        tree = self._tree
        for _ in range(self._depth):
            left_child = 2 * node
            left = tree[left_child]
            go_right = (mass >= left) & (tree[left_child + 1] > 0)
            mass -= np.where(go_right, left, 0.0)
            node = left_child + go_right
        return node - self._base

    def load(self, leaves: np.ndarray) -> None:
        """Replace every leaf (float64[size]) and rebuild the internal nodes."""
        leaves = np.asarray(leaves, dtype=np.float64)
        if leaves.shape != (self.size,):
            raise ValueError(f"expected {self.size} leaves, got shape {leaves.shape}")
        tree = self._tree
        tree[:] = 0.0
        tree[self._base : self._base + self.size] = leaves
        lo = self._base
        while lo > 1:
            lo //= 2
            tree[lo : 2 * lo] = tree[2 * lo : 4 * lo : 2] + tree[2 * lo + 1 : 4 * lo : 2]


def importance_weights(prob: np.ndarray, beta: float) -> np.ndarray:
    """float32[B] weights (N * P_i)^-beta / max_batch (N * P_j)^-beta of a batch drawn with
    probabilities prob float64[B] > 0 (N, the rows that could be drawn, cancels): one
    normalization per batch, the largest weight of the batch becomes 1."""
    prob = np.asarray(prob, np.float64)
    return ((prob / prob.min()) ** -float(beta)).astype(np.float32)
