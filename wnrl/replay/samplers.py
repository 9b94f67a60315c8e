"""How a replay draws its rows: uniformly, or in proportion to priority via a sum tree.

A sampler reads the rows of one `FrameRing` (which rows exist and are sampleable) and owns
the replay's random generator and, when prioritized, its priorities. `ReplayBuffer` holds
one, picked at construction (its `prioritized` argument), and tells it about every add and
hidden row; for the uniform sampler those notices are no-ops.

Prioritized: priorities p_i = (|TD_i| + eps) ** alpha live in a `SumTree` with one leaf per
stored row (flat position `stream * ring + slot`); exactly the sampleable rows have
p_i > 0. A row enters at the largest priority stored so far (`max_priority`) once the
add that completes its n-step window is made. P_i = p_i / sum_j p_j, weights normalized
by the batch's largest weight (`importance_weights`; docs/ARCHITECTURE.md, "Prioritized
replay", says why).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from wnrl.replay.storage import FrameRing
from wnrl.sum_tree import SumTree, importance_weights

__all__ = ["PrioritizedSampler", "Sampler", "UniformSampler"]


def seed_from_state(rng: torch.Tensor | dict) -> int:
    """A 63-bit seed derived from a generator state of any kind (deterministic)."""
    data = rng.to("cpu").numpy().tobytes() if isinstance(rng, torch.Tensor) else repr(
        sorted(rng.items())).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


class Sampler:
    """What every sampler has: the rows it draws from, its generator (seeded with `seed`)
    and `max_priority`, the priority new rows enter at (checkpointed, 1.0 if uniform)."""

    prioritized = False

    def __init__(self, rows: FrameRing, seed: int = 0) -> None:
        self.rows = rows
        self.rng = np.random.default_rng(seed)
        self.max_priority = 1.0

    @staticmethod
    def bytes_needed(capacity: int) -> int:
        """Bytes this sampler allocates for a replay of `capacity` rows."""
        return 0

    @property
    def nbytes(self) -> int:
        return 0

    @property
    def priority_total(self) -> float:
        """Sum of the stored priorities (0.0 if not prioritized)."""
        return 0.0

    @property
    def priorities(self) -> np.ndarray | None:
        """float64[num_envs, ring] copy of the stored priorities (None if not prioritized)."""
        return None

    def added(self) -> None:
        """The rows just added (`FrameRing.add`) may have made rows (un)sampleable."""

    def hidden(self, pos: np.ndarray) -> None:
        """Rows at flat positions pos int64[K] were hidden (`FrameRing.hide`)."""

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set priorities of rows int64[B] from |TD errors| float32[B] (no-op here)."""

    def sample(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(global ids int64[B], importance weights float32[B]) of B rows drawn with
        replacement; ValueError if no row is sampleable."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """max_priority, rng (bit generator state) and the sampler's own tensors."""
        return {"max_priority": self.max_priority, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`; a torch generator state (a `DeviceReplay`'s) reseeds the
        generator from it instead (deterministic, other draws)."""
        self.max_priority = float(state["max_priority"])
        if isinstance(state["rng"], dict):
            self.rng.bit_generator.state = state["rng"]
        else:
            self.rng = np.random.default_rng(seed_from_state(state["rng"]))


class UniformSampler(Sampler):
    """Every sampleable row equally likely; weights 1."""

    def sample(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        return self._draw(batch_size), np.ones(batch_size, np.float32)

    def _draw(self, batch_size: int) -> np.ndarray:
        """Rejection sampling over the stored rows (invalid rows are rare), then a draw from
        the list of sampleable rows for whatever 32 rounds did not fill."""
        rows = self.rows
        lo, n = rows.lo(rows.t), rows.num_envs
        found, need = [np.zeros(0, np.int64)], batch_size
        for _ in range(32 if rows.t > lo else 0):
            index = lo * n + self.rng.integers(0, (rows.t - lo) * n, size=need)
            found.append(index[rows.sampleable(*np.divmod(index, n))])
            need -= len(found[-1])
            if need == 0:
                break
        if need > 0:
            every = rows.sampleable_indices()
            if len(every) == 0:
                raise ValueError("replay has no sampleable transitions yet")
            found.append(self.rng.choice(every, size=need))
        return np.concatenate(found)


class PrioritizedSampler(Sampler):
    """Proportional prioritized sampling (Schaul et al. 2016), stratified over the batch:
    priorities (|TD| + eps) ** alpha in a sum tree over the flat row positions."""

    prioritized = True

    def __init__(self, rows: FrameRing, seed: int = 0, *, alpha: float = 0.6,
                 eps: float = 1e-6) -> None:
        super().__init__(rows, seed)
        self.alpha, self.eps = float(alpha), float(eps)
        self.tree = SumTree(rows.capacity)

    @staticmethod
    def bytes_needed(capacity: int) -> int:
        return 16 * (1 << (capacity - 1).bit_length())

    @property
    def nbytes(self) -> int:
        return self.tree.nbytes

    @property
    def priority_total(self) -> float:
        return self.tree.total

    @property
    def priorities(self) -> np.ndarray:
        return self.rows.rings(self.tree.leaves).copy()

    def added(self) -> None:
        """Zero the rows the add pushed out of the sampleable range; give max priority to
        rows whose n-step window the newest row completed."""
        rows, n = self.rows, self.rows.num_envs
        old = np.arange(rows.lo(rows.t - 1), rows.lo(rows.t))
        self.tree.set(rows.pos(old[None, :], np.arange(n)[:, None]).ravel(), 0.0)
        row, stream = rows.grid(max(rows.lo(rows.t), rows.t - 1 - rows.n_step))
        pos = rows.pos(row, stream)[rows.sampleable(row, stream)]
        pos = pos[self.tree.get(pos) == 0]
        self.tree.set(pos, self.max_priority)

    def hidden(self, pos: np.ndarray) -> None:
        self.tree.set(pos, 0.0)

    def locate(self, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding prefix sums mass float64[K] in [0, priority_total) of the priority
        tree: (global ids int64[K], their priorities float64[K], all > 0)."""
        pos = self.tree.find(np.minimum(mass, np.nextafter(self.tree.total, 0)))
        return self.rows.ids(pos), self.tree.get(pos)

    def sample(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """Stratified: one draw in each of B equal slices of the priority mass; weights
        `importance_weights(P, beta)`."""
        if (total := self.priority_total) <= 0:
            raise ValueError("replay has no sampleable transitions yet")
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        index, priority = self.locate(mass)
        return index, importance_weights(priority / total, beta)

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Stale ids (overwritten, not yet added, not sampleable) are ignored; of repeated
        ids one value is stored, and only stored values can raise `max_priority`."""
        index = np.asarray(index, dtype=np.int64)
        value = (np.abs(np.asarray(priority, np.float64)) + self.eps) ** self.alpha
        if value.shape != index.shape or index.ndim != 1 or not np.isfinite(value).all():
            raise ValueError(f"update_priorities needs one finite priority per index: got "
                             f"{value.shape} priorities for {index.shape} indices")
        rows = self.rows
        row, stream = np.divmod(index, rows.num_envs)
        pos = rows.pos(row, stream)
        ok = (row >= rows.lo(rows.t)) & (row < rows.t) & (self.tree.get(pos) > 0)
        self.tree.set(pos[ok], value[ok])  # of repeated ids one value wins: read it back
        self.max_priority = max(self.max_priority, float(self.tree.get(pos[ok]).max(initial=0)))

    def state_dict(self) -> dict:
        """Adds priorities: float64[capacity] tensor, the tree's leaves."""
        return {**super().state_dict(), "priorities": torch.from_numpy(self.tree.leaves.copy())}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.load(state["priorities"].numpy())
