"""Tests for wnrl.replay.samplers: the sampler is the buffer's constructor choice; uniform
rejection sampling and its fallback; stratified prioritized draws; sampler state."""

from __future__ import annotations

import numpy as np
import pytest

from wnrl.replay import ReplayBuffer, Transition
from wnrl.replay.samplers import PrioritizedSampler, Sampler, UniformSampler
from wnrl.replay.storage import FrameRing


def _rows(steps: int, valid_rows: set[int] | None = None, n: int = 1) -> list[Transition]:
    """Vector rows (2,) of n streams; every row valid unless valid_rows lists the valid ones."""
    return [Transition(np.full((n, 2), t, np.float32), np.zeros(n, int), np.ones(n, np.float32),
                       np.zeros(n, bool), np.zeros(n, bool),
                       np.full(n, valid_rows is None or t in valid_rows)) for t in range(steps)]


@pytest.mark.parametrize("prioritized", [False, True])
def test_sampler_is_a_constructor_choice(prioritized):
    rb = ReplayBuffer(64, (2,), np.float32, 2, frame_stack=1, prioritized=prioritized,
                      alpha=0.5, eps=0.1)
    kind = PrioritizedSampler if prioritized else UniformSampler
    assert type(rb.sampler) is kind and isinstance(rb.sampler, Sampler)
    assert rb.sampler.rows is rb.storage and rb.prioritized == prioritized
    assert rb.nbytes - rb.storage.nbytes == kind.bytes_needed(64) == (16 * 64 if prioritized else 0)
    for row in _rows(10, n=2):
        rb.add(row)
    assert (rb.priorities is not None) == prioritized
    assert rb.priority_total == (rb.sampler.tree.total if prioritized else 0.0)
    if prioritized:
        assert (rb.sampler.alpha, rb.sampler.eps) == (0.5, 0.1)
        assert rb.locate(np.zeros(1))[1][0] == 1.0
    else:
        with pytest.raises(AssertionError, match="locate needs prioritized"):
            rb.locate(np.zeros(1))
        rb.update_priorities(np.array([0]), np.array([np.nan]))  # uniform: a no-op
    assert list(rb.sampler.state_dict())[:2] == ["max_priority", "rng"]


def test_uniform_falls_back_to_the_list_of_sampleable_rows():
    ring = FrameRing(50, (2,), np.float32, 1, frame_stack=1, n_step=1)
    sampler = UniformSampler(ring, seed=0)
    for row in _rows(40, valid_rows={5}):  # one sampleable row among 40
        ring.add(row)
    index, weight = sampler.sample(64, beta=0.4)
    assert index.tolist() == [5] * 64 and weight.tolist() == [1.0] * 64
    empty = FrameRing(50, (2,), np.float32, 1, frame_stack=1, n_step=1)
    for row in _rows(40, valid_rows=set()):
        empty.add(row)
    with pytest.raises(ValueError, match="no sampleable"):
        UniformSampler(empty).sample(4, beta=0.4)


def test_uniform_draws_are_the_seeded_generators():
    ring = FrameRing(60, (2,), np.float32, 2, frame_stack=1, n_step=1)
    for row in _rows(20, n=2):
        ring.add(row)
    index, _ = UniformSampler(ring, seed=3).sample(16, beta=0.4)
    # every row but the newest (no next row yet) is sampleable: one draw of integers
    expect = np.random.default_rng(3).integers(0, 40, size=16)
    assert ring.sampleable(*np.divmod(expect, 2)).all()
    np.testing.assert_array_equal(index, expect)


def test_prioritized_draws_are_stratified():
    """Equal priorities and B = the sampleable rows: one draw in each slice of the mass, so
    every row exactly once, in the order of its leaf, all weights 1."""
    ring = FrameRing(3 * 20, (2,), np.float32, 3, frame_stack=1, n_step=2)
    sampler = PrioritizedSampler(ring, seed=0)
    for row in _rows(12, n=3):
        ring.add(row)
        sampler.added()
    every = ring.sampleable_indices()
    assert len(every) == 3 * 10 and sampler.priority_total == 30.0
    index, weight = sampler.sample(30, beta=0.7)
    row, stream = np.divmod(every, 3)
    np.testing.assert_array_equal(index, every[np.argsort(ring.pos(row, stream))])
    assert weight.tolist() == [1.0] * 30


def test_prioritized_rows_enter_at_max_and_leave_with_the_ring():
    ring = FrameRing(1 * 6, (2,), np.float32, 1, frame_stack=1, n_step=1)
    sampler = PrioritizedSampler(ring, alpha=1.0, eps=0.0)
    for row in _rows(3):
        ring.add(row)
        sampler.added()
    np.testing.assert_array_equal(sampler.priorities, [[1, 1, 0, 0, 0, 0]])
    sampler.update(np.array([1]), np.array([4.0]))
    ring.add(_rows(4)[3])
    sampler.added()
    np.testing.assert_array_equal(sampler.priorities, [[1, 4, 4, 0, 0, 0]])
    for row in _rows(7)[4:]:  # rows 4-6: row 6 overwrites row 0's slot
        ring.add(row)
        sampler.added()
    np.testing.assert_array_equal(sampler.priorities, [[0, 4, 4, 4, 4, 4]])
    sampler.hidden(ring.hide(np.array([2])))
    np.testing.assert_array_equal(sampler.priorities, [[0, 4, 0, 4, 4, 4]])
    state = sampler.state_dict()
    other = PrioritizedSampler(ring, seed=9, alpha=1.0, eps=0.0)
    other.load_state_dict(state)
    assert other.max_priority == 4.0 and other.priority_total == sampler.priority_total
    np.testing.assert_array_equal(other.sample(5, 0.4)[0], sampler.sample(5, 0.4)[0])
