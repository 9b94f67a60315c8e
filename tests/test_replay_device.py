"""Tests for wnrl.replay.device's DeviceReplay, on CPU tensors and (when present) on CUDA:
every sampleable row's batch equals ReplayBuffer's bit for bit over random streams (image
and vector obs, n-step 1 and 3, wrap-around, hide, priority updates), the replay-vs-env
truth test of tests/test_replay.py, and the draws (uniform coverage, prioritized
frequencies, weights, stratification)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_replay import GAMMA, atari_run, check, synthetic_run
from wnrl.config import ConfigError, ReplayConfig
from wnrl.replay import Batch, ReplayBuffer, Transition
from wnrl.replay.device import DeviceReplay

DEVICES = ["cpu", pytest.param("cuda", id="cuda", marks=[
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")])]


def host(batch: Batch) -> Batch:
    """A Batch of device tensors as NumPy arrays, checking every field's device first."""
    for name, value in zip(Batch._fields, batch):
        assert torch.is_tensor(value), name
    return Batch(*(v.cpu().numpy() for v in batch))


class OnHost:
    """DeviceReplay seen through ReplayBuffer's NumPy interface, for tests/test_replay.py's
    `check` (which compares every sampleable row with the recorded env observations)."""

    def __init__(self, replay: DeviceReplay) -> None:
        self.replay = replay
        self.num_envs, self.ring, self.stack, self.n_step = (replay.num_envs, replay.ring,
                                                             replay.stack, replay.n_step)

    def sampleable_indices(self) -> np.ndarray:
        return self.replay.sampleable_indices().cpu().numpy()

    def get(self, index: np.ndarray) -> Batch:
        return host(self.replay.get(index))

    @property
    def priorities(self) -> np.ndarray | None:
        p = self.replay.priorities
        return None if p is None else p.cpu().numpy()


def pair(obs_shape, n, ring, n_step, prioritized, device, **kw):
    """A ReplayBuffer and a DeviceReplay with the same settings."""
    stack = obs_shape[0] if len(obs_shape) > 1 else 1
    dtype = np.uint8 if len(obs_shape) > 1 else np.float32
    args = (n * ring, obs_shape, dtype, n)
    opts = dict(frame_stack=stack, n_step=n_step, gamma=GAMMA, prioritized=prioritized, **kw)
    return ReplayBuffer(*args, **opts), DeviceReplay(*args, **opts, device=device)


def add_both(rb: ReplayBuffer, dr: DeviceReplay, rec: dict, t: int) -> None:
    row = Transition(*(rec[k][t] for k in Transition._fields))
    rb.add(row)
    dr.add(row)


def assert_same_rows(rb: ReplayBuffer, dr: DeviceReplay, device: str) -> np.ndarray:
    """Same sampleable ids, same batch for every one of them (exactly), same priorities,
    and ValueError from both for some rows that are not sampleable."""
    index = rb.sampleable_indices()
    mine = dr.sampleable_indices()
    assert mine.device.type == torch.device(device).type
    np.testing.assert_array_equal(mine.cpu().numpy(), index)
    if len(index):
        theirs, got = rb.get(index), dr.get(index)
        assert got.obs.device.type == torch.device(device).type
        got = host(got)
        for name, a, b in zip(Batch._fields, theirs, got):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(b, a, err_msg=name)
    if rb.priorities is None:
        assert dr.priorities is None
    else:
        np.testing.assert_allclose(dr.priorities.cpu().numpy(), rb.priorities, rtol=1e-12,
                                   atol=0)
    lo = max(0, rb.steps_added - rb.ring) * rb.num_envs
    outside = np.setdiff1d(np.arange(lo, rb.steps_added * rb.num_envs + 2), index)[:4]
    for bad in outside:
        with pytest.raises(ValueError, match="not sampleable"):
            rb.get(np.array([bad]))
        with pytest.raises(ValueError, match="not sampleable"):
            dr.get(np.array([bad]))
    return index


def with_random_flags(rec: dict, seed: int) -> dict:
    """The run with independent random valid / terminal / truncated flags: episodes also
    end without a done flag (an invalid row after a plain one: a truncation)."""
    rng = np.random.default_rng(seed)
    shape = rec["valid"].shape
    return {**rec, "valid": rng.random(shape) < 0.85, "terminal": rng.random(shape) < 0.08,
            "truncated": rng.random(shape) < 0.05}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("obs_shape,n,ring,n_step,prioritized,random_flags", [
    ((4, 5, 6), 3, 23, 1, False, False), ((4, 5, 6), 3, 23, 3, True, False),
    ((4, 5, 6), 2, 17, 3, False, True), ((4, 2, 3), 1, 9, 1, True, True),
    ((3,), 3, 19, 3, False, False), ((3,), 2, 11, 1, True, False),
    ((5,), 4, 13, 3, True, True)])
def test_every_row_matches_replay_buffer(device, obs_shape, n, ring, n_step, prioritized,
                                         random_flags):
    """Random streams with life losses, game overs, truncations and autoresets (or random
    flags), 120 steps (several wraps of the ring): after every add the sampleable ids and
    every row's batch equal ReplayBuffer's; hide() and priority updates (with stale and
    repeated ids) are applied to both along the way."""
    rec = synthetic_run(120, n, obs_shape, seed=ring)
    if random_flags:
        rec = with_random_flags(rec, seed=ring)
    rb, dr = pair(obs_shape, n, ring, n_step, prioritized, device, alpha=0.7, eps=0.01,
                  seed=3)
    rng = np.random.default_rng(ring)
    checked, hidden = 0, 0
    for t in range(120):
        add_both(rb, dr, rec, t)
        index = assert_same_rows(rb, dr, device)
        checked += len(index)
        if t % 7 == 3 and len(index) > 2:
            some = rng.choice(index, size=min(6, len(index)))  # repeats included
            stale = np.array([0, 10**9, -5, int(index.max()) + n])
            ids = np.concatenate([some, stale])
            td = rng.exponential(size=len(ids)).astype(np.float32)
            rb.update_priorities(ids, td)
            dr.update_priorities(torch.as_tensor(ids, device=device), torch.as_tensor(td))
        if t % 29 == 17 and len(index) > 3:
            gone = np.concatenate([index[[0, len(index) // 2]], [10**9]])
            rb.hide(gone)
            dr.hide(gone)
            hidden += 1
    assert checked > 300 and hidden >= 3
    assert rb.steps_added == dr.steps_added == 120 and len(dr) == len(rb) == n * ring
    assert (rb.sampleable_indices() >= 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("game,frames,ring,n_step,prioritized", [
    ("breakout", 700, 61, 3, False), ("pong", 400, 47, 2, True)])
def test_stacks_and_targets_match_real_env(device, game, frames, ring, n_step, prioritized):
    """tests/test_replay.py's truth test against a real AtariVectorEnv (life losses, game
    overs, truncations, autoresets), on DeviceReplay: every sampleable row's stacks,
    action and n-step target equal what the env returned, as the ring wraps."""
    rec = atari_run(game, frames, 900)
    assert rec["truncated"].any() and (~rec["valid"]).sum() >= 4
    dr = DeviceReplay(2 * ring, (4, 84, 84), np.uint8, 2, frame_stack=4, n_step=n_step,
                      gamma=GAMMA, prioritized=prioritized, device=device)
    checked = 0
    for t in range(0, 900, 18):
        for k in range(t, t + 18):
            dr.add(Transition(*(rec[f][k] for f in Transition._fields)))
        checked += check(OnHost(dr), rec, t + 18)
    assert checked > 300


def filled(device: str, prioritized: bool, valid: set[int] | None = None, steps: int = 40,
           n: int = 2, **kw) -> DeviceReplay:
    """Vector rows (2,) of n streams; every row valid unless `valid` lists the valid ones."""
    dr = DeviceReplay(n * 50, (2,), np.float32, n, frame_stack=1, prioritized=prioritized,
                      device=device, **kw)
    for t in range(steps):
        dr.add(Transition(np.full((n, 2), t, np.float32), np.zeros(n, int),
                          np.ones(n, np.float32), np.zeros(n, bool), np.zeros(n, bool),
                          np.full(n, valid is None or t in valid)))
    return dr


@pytest.mark.parametrize("device", DEVICES)
def test_uniform_draws_cover_the_sampleable_rows_evenly(device):
    valid = set(range(40)) - {3, 4, 11, 20, 21, 22, 30}
    dr = filled(device, False, valid, seed=1)
    every = dr.sampleable_indices().cpu().numpy()
    assert 50 < len(every) < 80  # invalid rows and the newest row are left out
    drawn = np.concatenate([dr.sample(500).index.cpu().numpy() for _ in range(40)])
    assert np.isin(drawn, every).all()
    counts = np.array([(drawn == i).sum() for i in every])
    expected = len(drawn) / len(every)
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected, counts
    b = dr.sample(64, beta=0.9)
    assert b.weight.dtype == torch.float32 and (b.weight == 1).all()
    np.testing.assert_array_equal(host(b).obs[:, 0], host(b).index // 2)  # rows hold t


@pytest.mark.parametrize("device", DEVICES)
def test_prioritized_frequencies_weights_and_updates(device):
    """Three sampleable rows with priorities 1:2:4 (alpha 1, eps 0): frequencies within 5%
    of 1/7, 2/7, 4/7 over 20000 draws; weights (P / min P)^-beta; reversing the priorities
    reverses the frequencies."""
    dr = filled(device, True, valid={5, 12, 30}, n=1, alpha=1.0, eps=0.0, seed=7)
    index = dr.sampleable_indices().cpu().numpy()
    assert index.tolist() == [5, 12, 30]
    for prio in ([1.0, 2.0, 4.0], [4.0, 2.0, 1.0]):
        dr.update_priorities(index, np.array(prio, np.float32))
        p = np.array(prio) / sum(prio)
        counts = np.zeros(3)
        for _ in range(313):
            b = host(dr.sample(64, beta=0.5))
            k = np.searchsorted(index, b.index)
            assert (index[k] == b.index).all()
            np.add.at(counts, k, 1)
            np.testing.assert_allclose(b.weight, (p[k] / p[k].min()) ** -0.5, rtol=1e-6)
        np.testing.assert_allclose(counts / counts.sum(), p, rtol=0.05)
    assert float(dr.max_priority) == 4.0
    with pytest.raises(ValueError, match="one finite priority per index"):
        dr.update_priorities(index[:1], np.array([np.inf]))


@pytest.mark.parametrize("device", DEVICES)
def test_locate_matches_replay_buffer_at_the_boundaries(device):
    """Prefix sums at 0 (the first rows have zero priority), on the boundaries between
    rows, inside them and at the total land on ReplayBuffer's rows."""
    valid = {5, 12, 30}
    rb = ReplayBuffer(50, (2,), np.float32, 1, frame_stack=1, prioritized=True, alpha=1.0,
                      eps=0.0)
    dr = filled(device, True, valid=valid, n=1, alpha=1.0, eps=0.0)
    for t in range(40):
        rb.add(Transition(np.full((1, 2), t, np.float32), np.zeros(1, int),
                          np.ones(1, np.float32), np.zeros(1, bool), np.zeros(1, bool),
                          np.array([t in valid])))
    for replay in (rb, dr):
        replay.update_priorities(np.array([5, 12, 30]), np.array([1.0, 2.0, 4.0]))
    mass = np.array([0.0, 0.5, 1.0, 2.999, 3.0, 6.5, np.nextafter(7.0, 0), 7.0])
    ids, prio = dr.locate(mass)
    want_ids, want_prio = rb.locate(mass)
    assert ids.cpu().tolist() == want_ids.tolist() == [5, 5, 12, 12, 30, 30, 30, 30]
    np.testing.assert_array_equal(prio.cpu().numpy(), want_prio)
    with pytest.raises(AssertionError, match="locate needs prioritized"):
        filled(device, False).locate(np.zeros(1))


@pytest.mark.parametrize("device", DEVICES)
def test_prefix_sums_are_flat_over_zero_priorities(device):
    """Over 2**20 rows of mixed magnitudes, half of zero priority: the prefix sums never
    decrease and do not rise at a zero row (a device's parallel scan may round unevenly
    there), so no draw lands on one; 4096 draws find only rows of positive priority."""
    dr = DeviceReplay(2**20, (1,), np.float32, 1, frame_stack=1, prioritized=True,
                      device=device)
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(2**20, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 6, (2**20,), generator=gen)
    p[torch.rand(2**20, generator=gen) < 0.5] = 0.0
    dr.priority[: 2**20] = p.to(device)
    c = dr.prefix()
    assert (c[1:] >= c[:-1]).all() and (c[1:][p[1:].to(device) == 0] == c[:-1][
        p[1:].to(device) == 0]).all()
    assert (dr.priority[dr.draw(c, 4096, stratified=True)] > 0).all()
    assert (dr.priority[dr.search(c, torch.zeros(1, dtype=torch.float64, device=device))] >
            0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_prioritized_draws_are_stratified(device):
    """Equal priorities and B = the sampleable rows: one draw in each slice of the mass, so
    every row exactly once, all weights 1 (an unstratified draw repeats rows)."""
    dr = filled(device, True, steps=12, n=3, seed=0)
    every = dr.sampleable_indices().cpu().numpy()
    assert len(every) == 3 * 11
    for _ in range(5):
        b = host(dr.sample(33, beta=0.7))
        assert sorted(b.index.tolist()) == every.tolist() and (b.weight == 1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_draws_and_empty_replay(device):
    a, b = filled(device, False, seed=5), filled(device, False, seed=5)
    c = filled(device, False, seed=6)
    first, second = a.sample(64).index, b.sample(64).index
    assert torch.equal(first, second) and not torch.equal(first, c.sample(64).index)
    empty = filled(device, True, valid=set())
    with pytest.raises(ValueError, match="no sampleable"):
        empty.sample(4)
    with pytest.raises(ValueError, match="no sampleable"):
        filled(device, False, valid=set()).sample(4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prioritized", [False, True])
def test_a_run_of_draws_is_the_draws_of_single_samples(device, prioritized):
    """`sample_many(n)` (one prefix sum) returns what n `sample` calls in a row return,
    field for field, on either replay, and leaves the generator where they leave it."""
    valid = set(range(3, 40)) - {10, 11, 25}
    a = filled(device, prioritized, valid=valid, seed=3)
    b = filled(device, prioritized, valid=valid, seed=3)
    if prioritized:
        for dr in (a, b):
            idx = dr.sampleable_indices()[::3]
            dr.update_priorities(idx, torch.linspace(0.1, 3.0, len(idx)))
    singles = [a.sample(16, beta=0.6) for _ in range(4)]
    for x, y in zip(singles, b.sample_many(4, 16, beta=0.6), strict=True):
        same_batch(x, y)
    same_batch(a.sample(16, beta=0.6), b.sample(16, beta=0.6))  # the generators agree after
    with pytest.raises(ValueError, match="no sampleable"):
        filled(device, prioritized, valid=set()).sample_many(3, 4)
    rb = ReplayBuffer(100, (2,), np.float32, 2, frame_stack=1, seed=4)
    rb2 = ReplayBuffer(100, (2,), np.float32, 2, frame_stack=1, seed=4)
    for r in (rb, rb2):
        for t in range(30):
            r.add(Transition(np.full((2, 2), t, np.float32), np.zeros(2, int),
                             np.ones(2, np.float32), *(np.zeros(2, bool),) * 2,
                             np.ones(2, bool)))
    for x, y in zip([rb.sample(8) for _ in range(3)], rb2.sample_many(3, 8), strict=True):
        same_batch(x, y)


def test_config_errors_memory_and_from_config():
    cfg = ReplayConfig(capacity=1000, n_step=3, prioritized=True, priority_alpha=0.5)
    dr = DeviceReplay.from_config(cfg, (4, 84, 84), np.uint8, 8, gamma=0.97, seed=1)
    assert (dr.capacity, dr.n_step, dr.gamma, dr.alpha, dr.stack) == (1000, 3, 0.97, 0.5, 4)
    assert dr.frames.shape == (1001, 84, 84) and dr.frames.dtype == torch.uint8
    assert dr.nbytes == DeviceReplay.bytes_needed(1000, (4, 84, 84), np.uint8, 8)
    with pytest.raises(ConfigError, match="frame_stack"):
        DeviceReplay(1000, (4, 84, 84), np.uint8, 2, frame_stack=3)
    with pytest.raises(ConfigError, match="replay.capacity"):
        DeviceReplay(20, (4, 84, 84), np.uint8, 4, frame_stack=4)
    with pytest.raises(ValueError, match="obs shape"):
        dr.add(Transition(np.zeros((3, 4, 84, 84), np.uint8), *(np.zeros(3),) * 2,
                          *(np.zeros(3, bool),) * 3))
    assert dr.t == 0


def same_batch(a: Batch, b: Batch) -> None:
    for name, x, y in zip(Batch._fields, a, b):
        assert torch.equal(torch.as_tensor(x).cpu(), torch.as_tensor(y).cpu()), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("obs_shape,n,ring,n_step,prioritized,steps", [
    ((4, 5, 6), 3, 23, 3, True, 70), ((4, 5, 6), 2, 17, 1, False, 9),
    ((3,), 2, 11, 3, False, 50), ((5,), 3, 13, 1, True, 30)])
def test_state_dicts_load_into_either_replay(device, obs_shape, n, ring, n_step, prioritized,
                                             steps, tmp_path):
    """DeviceReplay's state_dict is ReplayBuffer's format: saved and loaded through
    torch.save / torch.load(weights_only=True), each replay loads the other's state with
    the same rows, priorities and max_priority (then both go on the same), its own state
    with the same draws; a state of other settings is refused naming the setting."""
    rec = with_random_flags(synthetic_run(steps + 20, n, obs_shape, seed=ring), seed=ring)
    rb, dr = pair(obs_shape, n, ring, n_step, prioritized, device, seed=4)
    for t in range(steps):
        add_both(rb, dr, rec, t)
        if t % 11 == 5 and len(index := rb.sampleable_indices()) > 2:
            td = np.linspace(0.1, 3.0, len(index[:5]), dtype=np.float32)
            rb.update_priorities(index[:5], td)
            dr.update_priorities(index[:5], td)
            rb.hide(index[-1:])
            dr.hide(index[-1:])

    def through_disk(state: dict, name: str) -> dict:
        torch.save(state, tmp_path / name)
        return torch.load(tmp_path / name, weights_only=True)

    from_host, from_device = through_disk(rb.state_dict(), "rb"), through_disk(dr.state_dict(),
                                                                                "dr")
    assert set(from_device) == set(from_host)
    for key in from_host:
        if key != "rng":
            assert type(from_device[key]) is type(from_host[key]), key
            if torch.is_tensor(from_host[key]):
                assert from_device[key].device.type == "cpu"
                assert torch.equal(from_device[key], from_host[key]), key
    assert from_device["config"] == from_host["config"]
    rb2, dr2 = pair(obs_shape, n, ring, n_step, prioritized, device, seed=99)
    dr2.load_state_dict(from_host)
    rb2.load_state_dict(from_device)
    assert float(dr2.max_priority) == rb.sampler.max_priority == rb2.sampler.max_priority
    for t in range(steps, steps + 20):  # the loaded replays go on exactly as the originals
        assert_same_rows(rb, dr2, device)
        assert_same_rows(rb2, dr, device)
        add_both(rb, dr2, rec, t)
        add_both(rb2, dr, rec, t)
    # its own state: the same draws as the original from there on
    again = DeviceReplay(n * ring, obs_shape, dr.obs_dtype, n, frame_stack=dr.stack,
                         n_step=n_step, gamma=GAMMA, prioritized=prioritized, device=device)
    again.load_state_dict(through_disk(dr.state_dict(), "dr2"))
    same_batch(again.sample(16, beta=0.5), dr.sample(16, beta=0.5))
    # another kind's generator state reseeds deterministically
    other = pair(obs_shape, n, ring, n_step, prioritized, device)
    other[0].load_state_dict(from_device)
    other[1].load_state_dict(from_host)
    rb2.load_state_dict(from_device)
    dr2.load_state_dict(from_host)
    same_batch(other[0].sample(16), rb2.sample(16))
    same_batch(other[1].sample(16), dr2.sample(16))
    bad = pair(obs_shape, n, ring, n_step + 1, prioritized, device)[1]
    with pytest.raises(ConfigError, match="n_step"):
        bad.load_state_dict(from_host)


@pytest.mark.parametrize("device", DEVICES)
def test_the_learner_takes_a_device_batch_as_the_host_batch(device):
    """The same rows from either replay: the learner updates to the same weights (a
    DeviceReplay batch is used where it is, a host batch copied there)."""
    from wnrl.config import LearnerConfig
    from wnrl.learner import Learner
    from wnrl.networks import make_q_network

    rec = synthetic_run(60, 2, (4, 84, 84), seed=8)
    rb, dr = pair((4, 84, 84), 2, 40, 3, False, device)
    for t in range(60):
        add_both(rb, dr, rec, t)
    index = rb.sampleable_indices()[:16]
    cfg = LearnerConfig(device=device, compile="false", precision="fp32", cuda_graph="false",
                        batch_size=16, target_update_period=2)
    torch.manual_seed(0)
    actions = int(rec["action"].max()) + 1
    a = Learner(make_q_network((4, 84, 84), actions, norm="weight"), cfg)
    b = Learner(make_q_network((4, 84, 84), actions, norm="weight"), cfg)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        ma, mb = a.update(rb.get(index)), b.update(dr.get(index))
        assert ma.loss == mb.loss
        np.testing.assert_array_equal(ma.td_abs, mb.td_abs)
    for k, v in a.online.state_dict().items():
        assert torch.equal(v, b.online.state_dict()[k]), k
