"""Tests for wnrl.replay's ReplayBuffer: stacks vs the observations a real AtariVectorEnv
produced, n-step targets and sampleable rows vs brute force, prioritized sampling, memory,
resume. The parts alone: test_replay_storage.py, test_replay_n_step.py,
test_replay_samplers.py."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from ale_py.vector_env import AtariVectorEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from wnrl.config import ConfigError, ReplayConfig
from wnrl.replay import Batch, ReplayBuffer, Transition

GAMMA = 0.9
ATARI = (4, 84, 84)


@functools.cache
def atari_run(game: str, max_frames: int, steps: int, n: int = 2) -> dict[str, np.ndarray]:
    """A random-action run of a real AtariVectorEnv, as the actor forms transitions:
    terminal = terminated | life lost, valid = not an autoreset step. Arrays [steps, n]."""
    env = AtariVectorEnv(game, n, num_threads=1, max_num_frames_per_episode=max_frames,
                         repeat_action_probability=0.25, reward_clipping=False,
                         episodic_life=False, life_loss_info=False, use_fire_reset=False)
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    rec: dict[str, list] = {k: [] for k in Transition._fields}
    done, lives = np.zeros(n, bool), info["lives"]
    for _ in range(steps):
        action = rng.integers(0, env.single_action_space.n, n)
        nxt, reward, term, trunc, info = env.step(action)
        lost = (info["lives"] < lives) & ~done
        row = Transition(obs, action, np.sign(reward).astype(np.float32), term | lost,
                         trunc & ~term, ~done)
        for k, v in zip(Transition._fields, row):
            rec[k].append(np.array(v))
        obs, lives, done = nxt, info["lives"], term | trunc
    env.close()
    return {k: np.stack(v) for k, v in rec.items()}


def synthetic_run(steps: int, n: int, obs_shape: tuple[int, ...], seed: int) -> dict:
    """A fake env with next-step autoreset, life losses, game overs and truncation whose
    frames encode (row, env); image stacks are zero-padded at episode starts like ALE."""
    rng = np.random.default_rng(seed)
    vector = len(obs_shape) == 1
    obs = np.zeros((n, *obs_shape), np.float32 if vector else np.uint8)
    rec: dict[str, list] = {k: [] for k in Transition._fields}
    ended, start, age = np.zeros(n, bool), np.ones(n, bool), np.zeros(n, int)
    for t in range(steps):
        frame = (t * n + np.arange(n)) % 250 + 1
        if vector:
            obs = (frame[:, None] + np.arange(obs_shape[0]) / 10).astype(np.float32)
        else:
            obs[start] = 0  # a new episode's stack: zeros, then its first frame
            obs = np.concatenate([obs[:, 1:], np.broadcast_to(
                frame[:, None, None, None], (n, 1, *obs_shape[1:]))], axis=1).astype(np.uint8)
        valid = ~ended  # the step after an episode's last one only resets
        age = np.where(start, 0, age + 1)
        term = (rng.random(n) < 0.08) & valid
        trunc = (age >= 12) & ~term & valid
        row = Transition(obs.copy(), rng.integers(0, 6, n),
                         rng.normal(size=n).astype(np.float32), term, trunc, valid)
        for k, v in zip(Transition._fields, row):
            rec[k].append(np.array(v))
        start = ~valid
        ended = valid & ((term & (rng.random(n) < 0.4)) | trunc)  # else a life loss
    return {k: np.stack(v) for k, v in rec.items()}


def feed(rb: ReplayBuffer, rec: dict, start: int, stop: int) -> None:
    for t in range(start, stop):
        rb.add(Transition(*(rec[k][t] for k in Transition._fields)))


def reference(rec: dict, added: int, ring: int, stack: int, n_step: int) -> dict:
    """Brute force: {(row, env): (return, discount, m)} for every sampleable row."""
    lo = 0 if added <= ring else added - ring + stack - 1
    out = {}
    for row in range(lo, added):
        for s in range(rec["valid"].shape[1]):
            if not rec["valid"][row, s]:
                continue
            ret, disc, m = 0.0, None, 0
            for k in range(n_step):
                if row + k >= added:
                    break
                ret += GAMMA**k * float(rec["reward"][row + k, s])
                m = k + 1
                if rec["terminal"][row + k, s]:
                    disc = 0.0
                    break
                if rec["truncated"][row + k, s]:
                    break
            if disc is None and row + m < added and m > 0:
                disc = GAMMA**m
            if disc is not None:
                out[(row, s)] = (ret, disc, m)
    return out


def check(rb: ReplayBuffer, rec: dict, added: int) -> int:
    """Every sampleable row vs brute force and vs the observations the actor saw."""
    n = rb.num_envs
    ref = reference(rec, added, rb.ring, rb.stack, rb.n_step)
    index = rb.sampleable_indices()
    assert sorted(index.tolist()) == sorted(r * n + s for r, s in ref), "sampleable rows"
    for chunk in np.array_split(index, max(1, len(index) // 256)):
        if len(chunk) == 0:
            continue
        b = rb.get(chunk)
        row, s = np.divmod(chunk, n)
        assert rec["valid"][row, s].all(), "an autoreset step came back as a transition"
        np.testing.assert_array_equal(b.obs, rec["obs"][row, s])
        np.testing.assert_array_equal(b.action, rec["action"][row, s])
        exp = np.array([ref[(r, e)] for r, e in zip(row, s)])
        np.testing.assert_allclose(b.reward, exp[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.discount, exp[:, 1], rtol=1e-6)
        nxt = row + exp[:, 2].astype(int)
        seen = nxt < added
        np.testing.assert_array_equal(b.next_obs[seen], rec["obs"][nxt[seen], s[seen]])
        assert not b.next_obs[~seen].any() and (b.discount[~seen] == 0).all()
    if rb.priorities is not None:  # exactly the sampleable rows carry priority
        stream, slot = np.nonzero(rb.priorities > 0)
        assert sorted((stream * rb.ring + slot).tolist()) == sorted(
            ((index % n) * rb.ring + (index // n) % rb.ring).tolist())
    return len(index)


@pytest.mark.parametrize("game,frames", [("breakout", 700), ("pong", 400)])
@pytest.mark.parametrize("ring,n_step,prioritized", [(5000, 1, False), (61, 3, False),
                                                     (47, 2, True)])
def test_stacks_and_targets_match_real_env(game, frames, ring, n_step, prioritized):
    rec = atari_run(game, frames, 900)
    next_valid = np.concatenate([rec["valid"][1:], np.ones((1, 2), bool)])
    if game == "breakout":  # the run has life losses, game overs and truncations
        assert (rec["terminal"] & next_valid).any() and (rec["terminal"] & ~next_valid).any()
    assert rec["truncated"].any() and (~rec["valid"]).sum() >= 4
    rb = ReplayBuffer(2 * ring, ATARI, np.uint8, 2, frame_stack=4, n_step=n_step, gamma=GAMMA,
                      prioritized=prioritized)
    every = 450 if ring > 900 else 9
    checked = 0
    for t in range(0, 900, every):
        feed(rb, rec, t, min(t + every, 900))
        checked += check(rb, rec, min(t + every, 900))
    assert checked > 300


@pytest.mark.parametrize("obs_shape,n,ring,n_step,seed", [
    ((4, 2, 3), 3, 40, 1, 0), ((4, 2, 3), 2, 25, 4, 1), ((2, 1, 1), 1, 7, 3, 2),
    ((3,), 3, 30, 3, 3), ((5,), 1, 9, 1, 4)])
def test_synthetic_streams_every_step(obs_shape, n, ring, n_step, seed):
    rec = synthetic_run(300, n, obs_shape, seed)
    stack = obs_shape[0] if len(obs_shape) > 1 else 1
    rb = ReplayBuffer(n * ring + n - 1, obs_shape, rec["obs"].dtype, n, frame_stack=stack,
                      n_step=n_step, gamma=GAMMA, prioritized=seed % 2 == 1)
    assert rb.capacity == n * ring
    for t in range(300):
        feed(rb, rec, t, t + 1)
        check(rb, rec, t + 1)
    assert len(rb) == n * ring


def test_vector_obs_stored_as_float32():
    rb = ReplayBuffer(64, (3,), np.float64, 2, frame_stack=1)
    assert rb.frames.dtype == np.float32 and rb.frames.shape == (2, 32, 3)
    rec = synthetic_run(40, 2, (3,), 0)
    rec["obs"] = rec["obs"].astype(np.float64)
    feed(rb, rec, 0, 40)
    b = rb.sample(16)
    assert b.obs.dtype == np.float32 and b.obs.shape == (16, 3) and b.next_obs.shape == (16, 3)
    row, s = np.divmod(b.index, 2)
    np.testing.assert_array_equal(b.obs, rec["obs"][row, s].astype(np.float32))


def test_terminal_vs_truncated_discounts():
    rb = ReplayBuffer(40, (2,), np.float32, 1, frame_stack=1, n_step=3, gamma=0.5)
    flags = [(0, 0, 1), (1, 0, 1), (0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 0, 0), (0, 0, 1),
             (0, 0, 1), (0, 0, 1), (0, 0, 1)]  # (terminal, truncated, valid) per row
    for t, (term, trunc, valid) in enumerate(flags):
        rb.add(Transition(np.full((1, 2), t, np.float32), np.array([t]), np.ones(1, np.float32),
                          np.array([term > 0]), np.array([trunc > 0]), np.array([valid > 0])))
    b = rb.get(np.array([0, 1, 3, 4, 6]))
    np.testing.assert_allclose(b.reward, [1.5, 1.0, 1.5, 1.0, 1.75])
    np.testing.assert_allclose(b.discount, [0.0, 0.0, 0.25, 0.5, 0.125])
    np.testing.assert_array_equal(b.next_obs[2:, 0], [5, 5, 9])  # truncation: final obs row
    assert set(rb.sampleable_indices().tolist()) == {0, 1, 3, 4, 6}  # 7.. lack a full window
    for bad in (2, 5, 7):
        with pytest.raises(ValueError, match="not sampleable"):
            rb.get(np.array([bad]))


def test_episode_end_without_done_flag_is_a_truncation():
    rb = ReplayBuffer(20, (1,), np.float32, 1, frame_stack=1, n_step=2, gamma=0.5)
    for t, valid in enumerate([1, 1, 0, 1, 1]):
        rb.add(Transition(np.full((1, 1), t, np.float32), np.zeros(1, int), np.ones(1, np.float32),
                          np.zeros(1, bool), np.zeros(1, bool), np.array([valid > 0])))
    b = rb.get(np.array([0, 1]))
    np.testing.assert_allclose(b.discount, [0.25, 0.5])
    np.testing.assert_array_equal(b.next_obs[:, 0], [2, 2])


def _filled(prioritized: bool, steps: int = 120, seed: int = 0, **kw) -> tuple[ReplayBuffer, dict]:
    rec = synthetic_run(steps, 4, (4, 3, 3), seed)
    rb = ReplayBuffer(4 * 50, (4, 3, 3), np.uint8, 4, frame_stack=4, gamma=GAMMA,
                      prioritized=prioritized, seed=seed, **kw)
    feed(rb, rec, 0, steps)
    return rb, rec


def test_prioritized_frequencies_and_weights():
    rb, _ = _filled(True, alpha=0.7, eps=0.01)
    index = rb.sampleable_indices()
    td = np.random.default_rng(1).exponential(size=len(index))
    rb.update_priorities(index, td)
    prio = (td + 0.01) ** 0.7
    counts = np.zeros(len(index))
    where = {int(i): k for k, i in enumerate(index)}
    draws = 0
    for _ in range(300):
        b = rb.sample(64, beta=0.5)
        k = np.array([where[int(i)] for i in b.index])
        np.add.at(counts, k, 1)
        draws += 64
        p = prio[k] / prio.sum()
        np.testing.assert_allclose(b.weight, (p**-0.5) / (p**-0.5).max(), rtol=1e-5)
    expected = draws * prio / prio.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < len(index) + 5 * np.sqrt(2 * len(index)), chi2
    assert rb.sample(8, beta=0.0).weight.tolist() == [1.0] * 8


def test_prioritized_updates_survive_later_adds():
    rb, rec = _filled(True, n_step=3, eps=0.25, alpha=1.0)
    for t in range(8):
        index = rb.sampleable_indices()
        rb.update_priorities(index, np.zeros(len(index)))
        feed(rb, rec, t, t + 1)
        still = np.intersect1d(index, rb.sampleable_indices())
        np.testing.assert_array_equal(rb.priorities[still % 4, (still // 4) % rb.ring], 0.25)


def test_prioritized_new_rows_get_max_and_stale_ids_are_ignored():
    rb, rec = _filled(True, eps=1e-6, alpha=1.0)
    index = rb.sampleable_indices()
    rb.update_priorities(index[:3], np.array([5.0, 0.5, 0.0]))
    assert np.isclose(rb.priorities.max(), 5.0 + 1e-6)
    feed(rb, rec, 0, 1)  # one more row per env completes the previous rows' windows
    new = np.setdiff1d(rb.sampleable_indices(), index)
    assert len(new) > 0
    np.testing.assert_allclose(rb.priorities[new % 4, (new // 4) % rb.ring], 5.0 + 1e-6)
    before = rb.priorities
    lo = (rb.sampleable_indices().min() // 4) * 4
    unsampleable = np.setdiff1d(np.arange(lo, 4 * rb.steps_added), rb.sampleable_indices())
    assert len(unsampleable) >= 4  # autoreset steps and the newest rows
    stale = np.concatenate([[0, 10**9], unsampleable])  # overwritten, unseen, not sampleable
    rb.update_priorities(stale, np.ones(len(stale)))
    np.testing.assert_array_equal(rb.priorities, before)
    with pytest.raises(ValueError, match="one finite priority per index"):
        rb.update_priorities(index[:1], np.array([np.nan]))


def test_max_priority_counts_only_stored_values():
    """The issue's reproduction: stale ids and losing duplicates used to raise the priority
    new rows enter at (7 -> 100) although no stored value changed."""
    rb, rec = _filled(True, eps=1e-6, alpha=1.0)
    index = rb.sampleable_indices()
    rb.update_priorities(index[:2], np.array([7.0, 1.0]))
    before = rb.priorities
    stale = np.arange(10**9, 10**9 + 256)  # never written: ignored
    rb.update_priorities(stale, np.full(256, 100.0))
    np.testing.assert_array_equal(rb.priorities, before)
    # a repeated id: one value is stored, the other must not count
    rb.update_priorities(index[[1, 1]], np.array([100.0, 2.0]))
    stored = rb.priorities[index[1] % 4, (index[1] // 4) % rb.ring]
    feed(rb, rec, 0, 1)  # the new rows enter at the largest stored priority
    new = np.setdiff1d(rb.sampleable_indices(), index)
    np.testing.assert_allclose(rb.priorities[new % 4, (new // 4) % rb.ring],
                               max(7.0, stored), rtol=1e-5)


def test_hidden_rows_stay_in_their_episode_but_are_never_sampled():
    rb, _ = _filled(True, steps=40)
    index = rb.sampleable_indices()
    rb.hide(index[:5])
    assert np.setdiff1d(index, rb.sampleable_indices()).tolist() == index[:5].tolist()
    assert (rb.priorities[index[:5] % 4, (index[:5] // 4) % rb.ring] == 0).all()
    after = rb.get(index[5:])  # their frames still fill the later rows' stacks
    np.testing.assert_array_equal(after.obs, _filled(True, steps=40)[0].get(index[5:]).obs)


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_gives_identical_samples(prioritized):
    for steps in (30, 170):  # partly filled and wrapped
        rb, rec = _filled(prioritized, steps=steps, seed=5)
        rb.sample(16)
        buf = io.BytesIO()
        torch.save(rb.state_dict(), buf)
        buf.seek(0)
        other = ReplayBuffer(4 * 50, (4, 3, 3), np.uint8, 4, frame_stack=4, gamma=GAMMA,
                             prioritized=prioritized, seed=99)
        other.load_state_dict(torch.load(buf, weights_only=True))
        for t in range(5):
            mine, theirs = rb.sample(32, 0.6), other.sample(32, 0.6)
            for a, b in zip(mine, theirs):
                np.testing.assert_array_equal(a, b)
            rb.update_priorities(mine.index[:8], np.arange(8.0))
            other.update_priorities(mine.index[:8], np.arange(8.0))
            feed(rb, rec, t, t + 1)
            feed(other, rec, t, t + 1)
    with pytest.raises(ConfigError, match="n_step"):
        ReplayBuffer(200, (4, 3, 3), np.uint8, 4, frame_stack=4, n_step=2).load_state_dict(
            rb.state_dict())


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_format_1(prioritized):
    """The checkpoint format: keys in order, their types, shapes and dtypes."""
    rb, _ = _filled(prioritized, steps=30, seed=5)
    state = rb.state_dict()
    assert list(state) == ["config", "t", "max_priority", "rng", "frames", "action", "reward",
                           "flags"] + ["priorities"] * prioritized
    assert state["config"] == {"format": 1, "num_envs": 4, "ring": 50, "obs_shape": [4, 3, 3],
                               "obs_dtype": "|u1", "stack": 4, "n_step": 1, "gamma": GAMMA,
                               "prioritized": prioritized}
    assert state["t"] == 30 and type(state["t"]) is int and type(state["max_priority"]) is float
    assert state["rng"] == np.random.default_rng(5).bit_generator.state  # not drawn from yet
    arrays = {k: (tuple(v.shape), v.dtype) for k, v in state.items() if torch.is_tensor(v)}
    assert arrays == {"frames": ((4, 30, 3, 3), torch.uint8), "action": ((4, 30), torch.int32),
                      "reward": ((4, 30), torch.float32), "flags": ((4, 30), torch.uint8),
                      **({"priorities": ((200,), torch.float64)} if prioritized else {})}


@pytest.mark.parametrize("prioritized", [False, True])
def test_atari_memory_per_transition(prioritized):
    rb = ReplayBuffer(100_000, ATARI, np.uint8, 8, frame_stack=4, prioritized=prioritized)
    assert rb.nbytes / rb.capacity <= 7200
    assert rb.nbytes == ReplayBuffer.bytes_needed(100_000, ATARI, np.uint8, 8, prioritized)
    assert rb.frames.shape == (8, 12_500, 84, 84) and rb.frames.dtype == np.uint8


def test_from_config_and_bad_shapes():
    cfg = ReplayConfig(capacity=1000, n_step=3, prioritized=True, priority_alpha=0.5)
    rb = ReplayBuffer.from_config(cfg, ATARI, np.uint8, 8, gamma=0.97, seed=1)
    assert (rb.capacity, rb.n_step, rb.gamma, rb.alpha, rb.stack) == (1000, 3, 0.97, 0.5, 4)
    assert ReplayBuffer.from_config(cfg, (4,), np.float32, 2, gamma=0.9).stack == 1
    with pytest.raises(ConfigError, match="frame_stack"):
        ReplayBuffer(1000, ATARI, np.uint8, 2, frame_stack=3)
    with pytest.raises(ConfigError, match="frame_stack"):
        ReplayBuffer(1000, (4,), np.float32, 2, frame_stack=4)
    with pytest.raises(ConfigError, match="replay.capacity"):
        ReplayBuffer(20, ATARI, np.uint8, 4, frame_stack=4)
    empty = ReplayBuffer(100, (3,), np.float32, 2, frame_stack=1)
    with pytest.raises(ValueError, match="no sampleable"):
        empty.sample(4)
    assert isinstance(rb, ReplayBuffer) and Batch._fields[-1] == "index"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), ring=st.integers(8, 40),
       n_step=st.integers(1, 4), steps=st.integers(1, 120), prioritized=st.booleans(),
       image=st.booleans())
def test_property_random_streams_keep_invariants(seed, n, ring, n_step, steps, prioritized,
                                                 image):
    """Random sequences of adds, life losses, game overs, truncations and samples: every
    sampleable row matches brute force (so no stack crosses an episode and no autoreset
    step is a transition), the ring never holds more than its capacity, and priorities
    sit exactly on the sampleable rows."""
    obs_shape = (4, 3, 3) if image else (3,)
    if ring < (obs_shape[0] if image else 1) + n_step + 1:
        return
    rec = synthetic_run(steps, n, obs_shape, seed)
    rb = ReplayBuffer(ring * n, obs_shape, np.uint8 if image else np.float32, n,
                      frame_stack=obs_shape[0] if image else 1, n_step=n_step, gamma=GAMMA,
                      prioritized=prioritized, seed=seed)
    for t in range(steps):
        feed(rb, rec, t, t + 1)
        assert len(rb) <= rb.capacity
    check(rb, rec, steps)
    if len(rb.sampleable_indices()):
        b = rb.sample(8)
        assert rec["valid"][b.index // n, b.index % n].all()
