"""One batch drawn from the union of many replay buffers, in proportion to priority.

Ape-X keeps the replay in shards, each holding one `ReplayBuffer` per actor worker. A
batch of B rows is drawn as if from one buffer holding every row (Schaul et al. 2016;
Horgan et al. 2018 pick shards by their total priority):

1. the learner's side splits B over the S shards, counts ~ Multinomial(B, q), q_j the
   shards' last reported masses (sums of priority^alpha) normalized (`split`);
2. shard j draws its c_j rows from the union of its buffers, stratified over [0, T_j)
   (`draw`), and gives each row its true probability P_i = q_j * p_i / T_j, T_j the
   shard's mass at that moment;
3. the learner's side concatenates the parts and normalizes the weights once, by the
   batch's largest weight (`merge`, `wnrl.sum_tree.importance_weights`).

P_i uses the q_j that was actually used, so the weights stay exact while q lags the
shards' masses (prefetched batches, priorities in flight); only the sampling
distribution lags, by a few batches. Uniform replay splits by stored rows, weight 1.
No module here imports Ray: the shard and the driver call these functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from wnrl.replay import Batch, ReplayBuffer
from wnrl.sum_tree import importance_weights


class Draw(NamedTuple):
    """One source's part of a batch (a shard's reply to `sample`)."""

    batch: Batch | None  # c rows, ids `id * K + k` for buffer k of K, weights set by `merge`
    prob: np.ndarray | None  # float64[c] P_i of each row (None: uniform replay)
    mass: float  # the source's sampling mass after the draw (priorities, or rows if uniform)


def _masses(buffers: list[ReplayBuffer]) -> np.ndarray:
    """float64[K] sampling mass per buffer: summed priorities, or stored rows if uniform."""
    if buffers and buffers[0].prioritized:
        return np.array([b.priority_total for b in buffers], np.float64)
    return np.array([len(b) if b.steps_added > b.stack + b.n_step else 0 for b in buffers],
                    np.float64)


def split(mass: np.ndarray, batch_size: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counts int64[S] ~ Multinomial(B, q) and q float64[S], q = mass / sum (uniform while
    every mass is 0 or unknown)."""
    mass = np.asarray(mass, np.float64)
    q = mass / mass.sum() if mass.sum() > 0 else np.full(len(mass), 1.0 / len(mass))
    return rng.multinomial(batch_size, q), q


def draw(buffers: list[ReplayBuffer], count: int, rng: np.random.Generator,
         share: float = 1.0) -> Draw:
    """`count` rows from the union of `buffers`, each row i with probability
    share * p_i / sum(priorities) per draw (stratified); fewer if they hold too few."""
    masses = _masses(buffers)
    edges = np.cumsum(masses)
    total = float(edges[-1]) if len(edges) else 0.0
    if count <= 0 or total <= 0:
        return Draw(None, None, total)
    if not buffers[0].prioritized:
        parts = []
        for k, c in enumerate(rng.multinomial(count, masses / total)):
            try:
                b = buffers[k].sample(int(c)) if c else None
            except ValueError:  # nothing sampleable in this buffer yet
                continue
            if b is not None:
                parts.append(b._replace(index=b.index * len(buffers) + k))
        return Draw(_concat(parts) if parts else None, None, total)
    mass = (np.arange(count) + rng.random(count)) * (total / count)
    mass = np.minimum(mass, np.nextafter(total, 0.0))
    k = np.searchsorted(edges, mass, side="right")  # edges[k-1] <= mass < edges[k]
    starts = edges - masses
    parts, probs = [], []
    for j in np.unique(k):
        index, priority = buffers[j].locate(mass[k == j] - starts[j])
        b = buffers[j].get(index)
        parts.append(b._replace(index=index * len(buffers) + j))
        probs.append(share * priority / total)
    return Draw(_concat(parts), np.concatenate(probs), total)


def merge(draws: list[Draw], beta: float) -> Batch | None:
    """The batch made of S sources' parts: ids `id * S + j` for source j, importance
    weights normalized once over the whole batch (None if no part has a row)."""
    S = len(draws)
    parts = [(j, d) for j, d in enumerate(draws) if d.batch is not None and len(d.batch.index)]
    if not parts:
        return None
    batch = _concat([d.batch._replace(index=d.batch.index * S + j) for j, d in parts])
    if parts[0][1].prob is None:
        return batch
    prob = np.concatenate([d.prob for _, d in parts])
    return batch._replace(weight=importance_weights(prob, beta))


def _concat(parts: list[Batch]) -> Batch:
    return Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in Batch._fields))
