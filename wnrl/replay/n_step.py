"""n-step windows and their targets, as pure functions of a window's rewards and end flags.

The window of row `j` is rows `j .. j+n-1` of its env stream. It stops at its first
terminal or truncated row: with `m` the window length (index of that row + 1, else n),
the target is `sum_{k<m} gamma^k r_{j+k} + discount * max_a Q(obs of row j+m, a)` with
`discount = 0` if row `j+m-1` is terminal (the episode ended: no bootstrap) and `gamma^m`
otherwise (truncation or a full window: bootstrap from row `j+m`). The replay stores the
rows (`wnrl.replay.storage`); the functions here only do the arithmetic on them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_step_targets", "window_complete", "window_length"]


def window_length(terminals: np.ndarray, truncateds: np.ndarray) -> np.ndarray:
    """int64[B] window lengths m in 1..n of windows with terminals, truncateds bool[B, n]:
    the index of the first terminal or truncated row + 1, else n."""
    stop = np.asarray(terminals, bool) | np.asarray(truncateds, bool)
    last = np.where(stop.any(axis=1), stop.argmax(axis=1), stop.shape[1] - 1)
    return (last + 1).astype(np.int64)


def n_step_targets(
    rewards: np.ndarray, terminals: np.ndarray, truncateds: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns over windows of n rows that stop at the first terminal/truncated row.

    Args: rewards float32[B, n], terminals bool[B, n], truncateds bool[B, n] of rows
    j .. j+n-1. With m the window length (index of the first stop + 1, else n):
    returns (sum_{k<m} gamma^k r_k: float32[B], discount: float32[B] = 0 if row m-1 is
    terminal else gamma^m, m: int64[B]). The bootstrap state is row j + m.
    """
    n = rewards.shape[1]
    last = window_length(terminals, truncateds) - 1
    powers = float(gamma) ** np.arange(n + 1, dtype=np.float64)
    inside = np.arange(n) <= last[:, None]
    ret = (np.asarray(rewards, np.float64) * powers[:n] * inside).sum(axis=1)
    hit_terminal = np.asarray(terminals, bool)[np.arange(len(last)), last]
    discount = np.where(hit_terminal, 0.0, powers[last + 1])
    return ret.astype(np.float32), discount.astype(np.float32), (last + 1).astype(np.int64)


def window_complete(first: np.ndarray, length: np.ndarray, terminals: np.ndarray,
                    written: int) -> np.ndarray:
    """bool[B]: whether windows starting at rows first int64[B], of lengths int64[B]
    (`window_length`) and terminals bool[B, n], have every row their target needs among
    the `written` rows 0 .. written-1 of their stream: the bootstrap row first + length
    is written, or the window ends in a terminal row (no bootstrap needed)."""
    ends_terminal = np.asarray(terminals, bool)[np.arange(len(first)), length - 1]
    return (first + length < written) | ends_terminal
