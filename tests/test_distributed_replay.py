"""Distributed prioritized replay without Ray: the shards' chunk streams (gaps, restarts,
stale chunks), sampling from the union of buffers and shards with exact importance
weights, and the weights a new worker incarnation acts with."""

from __future__ import annotations

import itertools
import types
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wnrl.config import Config, DistributedConfig, LearnerConfig, ReplayConfig
from wnrl.distributed.sampling import merge
from wnrl.distributed.shard import ReplayShard
from wnrl.distributed.workers import Chunk

GAMMA = 0.99
CONFIG = str(Path(__file__).parents[1] / "configs" / "cartpole_apex.yaml")


def _cfg(num_actors: int, capacity: int, n_step: int = 1, alpha: float = 1.0) -> Config:
    return Config(replay=ReplayConfig(capacity=capacity, n_step=n_step, prioritized=True,
                                      priority_alpha=alpha, priority_eps=1e-6),
                  learner=LearnerConfig(gamma=GAMMA, batch_size=32),
                  distributed=DistributedConfig(num_actors=num_actors))


def _chunk(worker: int, incarnation: str, seq: int, frames: np.ndarray, last: np.ndarray,
           **rows: np.ndarray) -> Chunk:
    """A chunk of T steps of N envs; frames [T, N, *frame], flags default to plain steps."""
    T, N = frames.shape[:2]
    zeros = np.zeros((T, N), bool)
    return Chunk(worker, incarnation, seq, frames, rows.get("action", np.zeros((T, N), np.int64)),
                 rows.get("reward", np.zeros((T, N), np.float32)), rows.get("terminal", zeros),
                 rows.get("truncated", zeros), rows.get("valid", ~zeros), last,
                 rows.get("priority"), [], 0.0, "local")


def _vector_chunk(worker: int, steps: int, num_envs: int = 4) -> Chunk:
    frames = np.arange(steps * num_envs, dtype=np.float32).reshape(steps, num_envs, 1)
    return _chunk(worker, f"w{worker}", 0, frames, np.zeros((num_envs, 1), np.float32))


def _decode(index: np.ndarray, buffers_per_shard: list[int]) -> list[tuple[int, int, int]]:
    """Batch ids of a sharded replay -> (shard j, buffer k, row id in that buffer)."""
    S = len(buffers_per_shard)
    out = []
    for i in index:
        rest, j = divmod(int(i), S)
        row, k = divmod(rest, buffers_per_shard[j])
        out.append((j, k, row))
    return out


# ---- 1. the batch is drawn from the union, with the true P_i -----------------------------

def test_importance_weights_account_for_how_the_buffer_was_chosen():
    """The issue's reproduction: one shard, two workers, alpha = beta = 1; worker 0's rows
    at priority 1, worker 1's: 12 rows at 50 and 104 at 1. The IS-corrected mass (summed
    weights per row per draw) must be the same for every row."""
    shard = ReplayShard(_cfg(2, 400), (1,), np.float32, 4, [0, 1], 2, seed=3)
    for w in (0, 1):
        shard.add_chunk(_vector_chunk(w, 30))  # 4 * 29 = 116 sampleable rows each
    ids = [b.sampleable_indices() for b in shard.buffers]
    assert [len(i) for i in ids] == [116, 116]
    shard.buffers[0].update_priorities(ids[0], np.ones(116))
    shard.buffers[1].update_priorities(ids[1], np.r_[np.full(12, 50.0), np.ones(104)])
    group = {(0, int(i)): 0 for i in ids[0]}
    group.update({(1, int(i)): 1 if r >= 12 else 2 for r, i in enumerate(ids[1])})
    mass, draws = np.zeros(3), 0
    for _ in range(600):
        batch = merge([shard.sample(64)], beta=1.0)
        for (_, k, row), w in zip(_decode(batch.index, [2]), batch.weight):
            mass[group[(k, row)]] += w
        draws += 64
    per_row = mass / np.array([116, 104, 12]) / draws
    # all rows: 1 / (sum of priorities) = 1 / (116 + 104 + 600) after the batch max
    np.testing.assert_allclose(per_row, 1 / 820, rtol=0.08)


class _Local:
    """In-process stand-in for a Ray actor handle: `h.method.remote(*a)` calls it now."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __getattr__(self, name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(remote=getattr(self.obj, name))


def test_sharded_sampler_draws_the_union_by_priority_with_exact_weights(monkeypatch):
    """3 actors on 2 shards (shard 0 serves workers 0 and 2), uneven sizes and skewed
    priorities: sampling frequency ∝ priority over all rows, every row's IS-corrected
    mass (draws / (N * P_i)) is 1, and each batch is normalized once by its max weight."""
    pool = pytest.importorskip("wnrl.distributed.pool")
    monkeypatch.setattr(pool, "get", lambda ref, timeout, what: ref)
    cfg = _cfg(3, 3 * 300, alpha=0.6)
    shards = [ReplayShard(cfg, (1,), np.float32, 2, w, 3, seed=j)
              for j, w in enumerate(([0, 2], [1]))]
    rng = np.random.default_rng(0)
    prio = {}  # (shard, buffer, row) -> p = (|td| + eps) ** alpha
    for j, k, steps in ((0, 0, 30), (1, 0, 120), (0, 1, 60)):
        shards[j].add_chunk(_vector_chunk(shards[j].worker_ids[k], steps, num_envs=2))
        ids = shards[j].buffers[k].sampleable_indices()
        td = np.where(rng.random(len(ids)) < 0.1, 60.0, rng.exponential(1.0, len(ids)))
        shards[j].buffers[k].update_priorities(ids, td)
        prio.update({(j, k, int(i)): (t + 1e-6) ** 0.6 for i, t in zip(ids, td)})
    replay = pool.ShardedReplay([_Local(s) for s in shards], 1.0, 64)
    keys = list(prio)
    where = {key: r for r, key in enumerate(keys)}
    p = np.array([prio[key] for key in keys])
    counts, corrected, draws = np.zeros(len(keys)), np.zeros(len(keys)), 0
    for _ in range(500):
        batch = replay.sample(64, beta=1.0)
        r = np.array([where[key] for key in _decode(batch.index, [2, 1])])
        want = (p[r] / p[r].min()) ** -1.0  # P_i = p_i / sum p: one normalization
        np.testing.assert_allclose(batch.weight, want, rtol=1e-5)
        np.add.at(counts, r, 1)
        np.add.at(corrected, r, p.sum() / (len(p) * p[r]))  # 1 / (N * P_i)
        draws += 64
    expected = draws * p / p.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < len(p) + 5 * np.sqrt(2 * len(p)), chi2
    for j, k in ((0, 0), (0, 1), (1, 0)):  # per worker: mean IS-corrected mass per draw
        rows = [where[key] for key in keys if key[:2] == (j, k)]
        assert abs(corrected[rows].sum() / (len(rows) * draws / len(p)) - 1) < 0.1
    # priorities go back to the shard and buffer each row came from
    replay.update_priorities(batch.index, np.full(64, 3.0))
    for j, k, row in _decode(batch.index, [2, 1]):
        buf = shards[j].buffers[k]
        s, t = row % buf.num_envs, row // buf.num_envs
        assert np.isclose(buf.priorities[s, t % buf.ring], (3.0 + 1e-6) ** 0.6)


# ---- 2. lost chunks, restarts and stale chunks ---------------------------------------------

def _frames(values: list[int]) -> np.ndarray:
    return np.array(values, np.float32).reshape(len(values), 1, 1, 1)


def test_a_lost_chunk_closes_the_stream_of_a_live_incarnation():
    """The issue's reproduction: frames 10-14, a lost chunk (15-19), then frames 20-24 of
    the same incarnation; n = 3. Row 13 used to give next_obs [13, 14, 20, 21]."""
    shard = ReplayShard(_cfg(1, 200, n_step=3), (4, 1, 1), np.float32, 1, [0], 1)
    shard.add_chunk(_chunk(0, "a", 0, _frames([10, 11, 12, 13, 14]), _frames([15])[0]))
    shard.add_chunk(_chunk(0, "a", 2, _frames([20, 21, 22, 23, 24]), _frames([25])[0]))
    buf = shard.buffers[0]
    assert shard.stats()["gaps_seen"] == [1] and buf.steps_added == 11  # + one closing row
    b = buf.get(buf.sampleable_indices())
    at = {int(f): i for i, f in enumerate(b.obs[:, -1, 0, 0])}
    assert sorted(at) == [10, 11, 12, 13, 14]  # 20-22 would need the lost 17-19
    np.testing.assert_array_equal(b.obs[at[13], :, 0, 0], [10, 11, 12, 13])
    np.testing.assert_array_equal(b.next_obs[at[13], :, 0, 0], [12, 13, 14, 15])
    np.testing.assert_allclose(b.discount[[at[13], at[14]]], [GAMMA**2, GAMMA], rtol=1e-6)
    # a chunk older than one stored is dropped; a new incarnation starts new episodes
    assert shard.add_chunk(_chunk(0, "a", 1, _frames([15] * 5), _frames([20])[0]))["steps"] == 0
    shard.add_chunk(_chunk(0, "b", 0, _frames([30, 31, 32, 33, 34]), _frames([35])[0]))
    assert shard.stats()["stale_chunks"] == [1] and shard.stats()["restarts_seen"] == [1]
    b = buf.get(buf.sampleable_indices())
    at = {int(f): i for i, f in enumerate(b.obs[:, -1, 0, 0])}
    assert sorted(at) == [10, 11, 12, 13, 14, 23, 24, 30, 31]
    np.testing.assert_array_equal(b.obs[at[23], :, 0, 0], [20, 21, 22, 23])
    np.testing.assert_array_equal(b.next_obs[at[23], :, 0, 0], [22, 23, 24, 25])  # closed
    np.testing.assert_allclose(b.discount[at[23]], GAMMA**2, rtol=1e-6)
    np.testing.assert_array_equal(b.obs[at[30], :, 0, 0], [0, 0, 0, 30])  # a fresh game


class _SimWorker:
    """A worker's N env streams as the actor sees them: frames are unique codes, stacks of
    4 zero-padded at a reset; records the truth of every row it ever emits."""

    def __init__(self, worker: int, n: int, rng: np.random.Generator,
                 codes: itertools.count) -> None:
        self.worker, self.n, self.rng, self.codes = worker, n, rng, codes
        self.generation = 0
        self.truth: dict[int, dict] = {}  # frame code of a row's newest frame -> its row
        self.restart()

    def restart(self) -> None:
        self.generation += 1
        self.incarnation, self.seq = f"w{self.worker}g{self.generation}", 0
        self.stack = [deque([0.0] * 3 + [float(next(self.codes))], maxlen=4)
                      for _ in range(self.n)]
        self.ended = np.zeros(self.n, bool)
        self.rows: list[list[dict]] = [[] for _ in range(self.n)]  # per stream, in order

    def chunk(self, steps: int) -> tuple[Chunk, list[dict]]:
        cols = {k: np.zeros((steps, self.n), d) for k, d in
                (("reward", np.float32), ("terminal", bool), ("truncated", bool),
                 ("valid", bool), ("action", np.int64))}
        frames, made = np.zeros((steps, self.n, 1, 1), np.float32), []
        for t, s in itertools.product(range(steps), range(self.n)):
            row = {"obs": np.array(self.stack[s]), "t": t, "pos": None, "list": self.rows[s],
                   "h": len(self.rows[s]), "valid": not self.ended[s]}
            frames[t, s] = row["obs"][-1]
            if self.ended[s]:  # the autoreset step: its obs is the final observation
                self.stack[s] = deque([0.0] * 3 + [float(next(self.codes))], maxlen=4)
                self.ended[s] = False
                row.update(reward=0.0, terminal=False, truncated=False)
            else:
                u = self.rng.random()
                row.update(reward=float(self.rng.integers(-3, 4)), terminal=u < 0.15,
                           truncated=0.15 <= u < 0.2)
                self.ended[s] = u < 0.2 and u >= 0.05  # u < 0.05: a life lost, game goes on
                self.stack[s].append(float(next(self.codes)))
            for k in cols:
                cols[k][t, s] = row.get(k, 0)
            self.rows[s].append(row)
            self.truth[int(row["obs"][-1])] = row
            made.append(row)
        for s in range(self.n):
            self.rows[s][-1]["after"] = np.array(self.stack[s])  # the obs after the chunk
        prio = np.where(self.rng.random((steps, self.n)) < 0.5, np.nan,
                        self.rng.exponential(1.0, (steps, self.n))).astype(np.float32)
        last = np.array([st[-1] for st in self.stack], np.float32).reshape(self.n, 1, 1)
        c = Chunk(self.worker, self.incarnation, self.seq, frames, cols["action"],
                  cols["reward"], cols["terminal"], cols["truncated"], cols["valid"], last,
                  prio, [], 0.0, "local")
        self.seq += 1
        return c, made


def _expected(rows: list[dict], h: int, n_step: int) -> tuple[float, float, np.ndarray, int]:
    """The true n-step target of row h of a stream: (return, discount, next obs, m), the
    window cut where a row after it never reached the replay."""
    ret, m = 0.0, n_step
    for k in range(n_step):
        r = rows[h + k]
        ret += GAMMA**k * r["reward"]
        nxt = rows[h + k + 1] if h + k + 1 < len(rows) else None
        if r["terminal"] or r["truncated"] or nxt is None or nxt["pos"] is None \
                or nxt["pos"] != r["pos"] + 1:
            m = k + 1
            break
    last = rows[h + m - 1]
    after = rows[h + m]["obs"] if h + m < len(rows) else last["after"]
    if "after" in last and (h + m >= len(rows) or rows[h + m]["pos"] != last["pos"] + 1):
        after = last["after"]
    return ret, 0.0 if last["terminal"] else GAMMA**m, after, m


EVENTS = st.lists(st.tuples(st.sampled_from(["deliver"] * 4 + ["lose", "restart", "late"]),
                            st.integers(0, 1), st.integers(1, 6)), min_size=1, max_size=14)


@settings(max_examples=40, deadline=None)
@given(events=EVENTS, n_step=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_property_no_sampled_stack_or_window_spans_a_gap_or_two_episodes(events, n_step, seed):
    rng, codes = np.random.default_rng(seed), itertools.count(1)
    shard = ReplayShard(_cfg(2, 2 * 2 * 200, n_step=n_step), (4, 1, 1), np.float32, 2,
                        [0, 1], 2, seed=seed)
    sims = [_SimWorker(w, 2, rng, codes) for w in (0, 1)]
    lost: list[list[tuple[Chunk, list[dict]]]] = [[], []]
    def deliver(w: int, chunk: Chunk, made: list[dict]) -> None:
        stored = shard.add_chunk(chunk)["steps"]
        assert stored in (0, chunk.action.size)
        for r in made if stored else []:  # the buffer row each delivered truth row went to
            r["pos"] = shard.buffers[w].steps_added - len(chunk.action) + r["t"]

    for kind, w, steps in events:
        if kind == "restart":
            sims[w].restart()
        elif kind == "late":  # an earlier lost chunk arrives after all (maybe dropped)
            if lost[w]:
                deliver(w, *lost[w].pop(0))
        elif kind == "lose":
            lost[w].append(sims[w].chunk(steps))
        else:
            deliver(w, *sims[w].chunk(steps))
    for sim, buf in zip(sims, shard.buffers):
        ids = buf.sampleable_indices()
        prio = buf.priorities
        assert set(np.flatnonzero(prio.T.ravel() > 0)) == set(ids)  # tree = sampleable set
        if len(ids) == 0:
            continue
        b = buf.get(ids)
        for i in range(len(ids)):
            row = sim.truth.get(int(b.obs[i, -1, 0, 0])) if b.obs[i, -1, 0, 0] else None
            assert row is not None and row["valid"] and row["pos"] == ids[i] // 2
            np.testing.assert_array_equal(b.obs[i, :, 0, 0], row["obs"])  # what the actor saw
            ret, disc, after, _ = _expected(row["list"], row["h"], n_step)
            assert np.isclose(b.reward[i], ret, atol=1e-4)
            assert np.isclose(b.discount[i], disc, rtol=1e-5)
            if disc > 0:
                np.testing.assert_array_equal(b.next_obs[i, :, 0, 0], after)
    every = {int(i) * 2 + k for k, bb in enumerate(shard.buffers) for i in bb.sampleable_indices()}
    if every:  # the shard draws only sampleable rows
        assert set(merge([shard.sample(16)], beta=0.5).index.tolist()) <= every


# ---- 4. a new incarnation acts with the current weights ------------------------------------

def test_a_new_worker_incarnation_gets_the_current_weights_before_it_acts(monkeypatch):
    """A worker that Ray restarted between two requests (no failed chunk seen) used to get
    no weights with its next request and acted with its fresh, untrained network."""
    pool_mod = pytest.importorskip("wnrl.distributed.pool")
    import ray

    from wnrl.config import load_config
    from wnrl.distributed.workers import ActorWorker

    monkeypatch.setattr(ray, "put", lambda x: x)  # in-process: refs are the objects
    monkeypatch.setattr(ray, "get", lambda x, timeout=None: x)
    cfg = load_config(CONFIG, ["distributed.num_actors=1", "distributed.chunk_steps=5"])
    shard = ReplayShard(cfg, (4,), np.float32, 4, [0], 1)
    made: list[ActorWorker] = []

    class WorkerCls:  # what `ray.remote(ActorWorker)` gives the pool, run in-process
        @staticmethod
        def remote(*args):
            made.append(ActorWorker(*args))
            WorkerCls.args = args
            return _Local(made[-1])

    pool = pool_mod.ActorPool(cfg, WorkerCls, [_Local(shard)], 4)
    weights = {k: torch.full_like(v, 0.5) for k, v in made[0].actor.net.state_dict().items()}
    pool.set_weights(weights)
    pool.request(0)
    pool.workers[0].handle = WorkerCls.remote(*WorkerCls.args)  # Ray restarts it: same args
    pool.request(0)
    for k, v in made[-1].actor.net.state_dict().items():
        torch.testing.assert_close(v, weights[k])
    assert shard.stats()["restarts_seen"] == [1]


def test_a_restarting_worker_is_paused_not_dropped(monkeypatch):
    """Ray fails every call to a restarting actor at once (ActorUnavailableError); five of
    them used to drop the worker, and with it the run, while Ray was bringing it back."""
    pool_mod = pytest.importorskip("wnrl.distributed.pool")
    from ray.exceptions import ActorUnavailableError

    from wnrl.config import load_config

    def unavailable(ref, timeout, what):
        raise ActorUnavailableError("The actor is restarting.", None)

    monkeypatch.setattr(pool_mod, "get", unavailable)
    cfg = load_config(CONFIG, ["distributed.num_actors=1", "distributed.call_timeout_s=5"])
    worker_cls = types.SimpleNamespace(remote=lambda *args: object())
    pool = pool_mod.ActorPool(cfg, worker_cls, [object()], 4)
    w = pool.workers[0]
    for _ in range(8):
        assert pool._collect(w, None) == []
    assert w.alive and w.failures == 0 and w.lost_chunks == 8
    assert w.retry_at > w.unavailable_since  # not asked again at once
    pool.refill(lambda steps: True)
    assert len(w.in_flight) == 0
    w.unavailable_since -= 6  # unavailable for longer than the timeout: dropped
    with pytest.raises(pool_mod.DistributedError, match="every actor worker died"):
        pool._collect(w, None)
