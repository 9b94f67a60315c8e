"""Tests for wnrl.replay.storage: frames stored once, stacks padded at episode starts,
episode flags, positions and ids, its state, the memory check."""

from __future__ import annotations

import numpy as np
import pytest

import wnrl.replay.storage as storage_mod
from wnrl.config import ConfigError
from wnrl.replay import ReplayBuffer, ReplayMemoryError, Transition
from wnrl.replay.storage import HIDDEN, TRUNCATED, VALID, FrameRing

ATARI = (4, 84, 84)


def _frame(t: int, s: int) -> int:
    return 10 * t + s + 1


def _stacked_rows(steps: int, invalid: dict[int, set[int]]) -> list[Transition]:
    """Rows of 2 streams of (3, 1, 1) stacks whose frames are 10 t + s + 1, zero-padded at
    episode starts; invalid[t] lists the streams whose row t is an autoreset step."""
    rows, stack, start = [], np.zeros((2, 3, 1, 1), np.uint8), np.ones(2, bool)
    for t in range(steps):
        stack[start] = 0
        stack = np.concatenate([stack[:, 1:], np.array(
            [_frame(t, s) for s in range(2)], np.uint8).reshape(2, 1, 1, 1)], axis=1)
        valid = np.array([s not in invalid.get(t, ()) for s in range(2)])
        rows.append(Transition(stack.copy(), np.array([t, -t]), np.full(2, t, np.float32),
                               np.zeros(2, bool), np.zeros(2, bool), valid))
        start = ~valid
    return rows


def test_frames_stored_once_and_stacks_zero_padded_at_episode_starts():
    ring = FrameRing(2 * 10, (3, 1, 1), np.uint8, 2, frame_stack=3, n_step=1)
    rows = _stacked_rows(8, {3: {0}})  # stream 0: episode rows 0-2, autoreset 3, then 4-7
    for row in rows:
        ring.add(row)
    assert ring.t == 8 and len(ring) == 16 and ring.frames.shape == (21, 1, 1)
    np.testing.assert_array_equal(ring.rings(ring.frames)[:, :8, 0, 0],
                                  [[_frame(t, s) for t in range(8)] for s in range(2)])
    row, stream = np.array([1, 4, 5, 6, 6]), np.array([0, 0, 0, 0, 1])
    got = ring.stacks(row, stream, np.ones(5, bool))
    np.testing.assert_array_equal(got, np.stack([rows[r].obs[s] for r, s in zip(row, stream)]))
    np.testing.assert_array_equal(got[:3, :, 0, 0], [[0, 1, 11], [0, 0, 41], [0, 41, 51]])
    assert not ring.stacks(row[:1], stream[:1], np.zeros(1, bool)).any()  # unseen: zeros
    # the episode that ended at row 2 without a done flag ends by truncation
    assert ring.flags[ring.pos(2, 0)] == VALID | TRUNCATED
    assert ring.flags[ring.pos(3, 0)] == 0 and ring.flags[ring.pos(2, 1)] == VALID
    np.testing.assert_array_equal(ring.rings(ring.action)[1, :3], [0, -1, -2])


def test_sampleable_rows_hide_and_ids_after_wrap():
    ring = FrameRing(2 * 10, (3, 1, 1), np.uint8, 2, frame_stack=3, n_step=2)
    for row in _stacked_rows(25, {20: {1}}):
        ring.add(row)
    assert ring.lo(ring.t) == 25 - 10 + 2  # the oldest kept rows lack their older frames
    row, stream = ring.grid(ring.lo(ring.t))
    ids = row * 2 + stream
    np.testing.assert_array_equal(ring.ids(ring.pos(row, stream)), ids)
    expect = (row < 23) & ~((stream == 1) & (row == 20))  # rows 23, 24: incomplete window
    np.testing.assert_array_equal(ring.sampleable(row, stream), expect)
    np.testing.assert_array_equal(ring.sampleable_indices(), ids[expect])
    pos = ring.hide(np.array([17 * 2, 18 * 2 + 1, 0, 10**6]))  # overwritten/unseen: ignored
    np.testing.assert_array_equal(pos, ring.pos(np.array([17, 18]), np.array([0, 1])))
    assert (ring.flags[pos] & HIDDEN).all()
    assert not ring.sampleable(np.array([17, 18]), np.array([0, 1])).any()
    assert ring.stacks(np.array([19]), np.array([0]), np.ones(1, bool))[0, 0, 0, 0] == 171


def test_state_dict_shapes_dtypes_and_round_trip():
    ring = FrameRing(2 * 10, (3, 1, 1), np.uint8, 2, frame_stack=3, n_step=1)
    for row in _stacked_rows(7, {}):
        ring.add(row)
    state = ring.state_dict()
    assert list(state) == ["t", "frames", "action", "reward", "flags"] and state["t"] == 7
    shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in state.items() if k != "t"}
    assert shapes == {"frames": ((2, 7, 1, 1), "torch.uint8"), "action": ((2, 7), "torch.int32"),
                      "reward": ((2, 7), "torch.float32"), "flags": ((2, 7), "torch.uint8")}
    other = FrameRing(2 * 10, (3, 1, 1), np.uint8, 2, frame_stack=3, n_step=1)
    other.load_state_dict(state)
    for name in FrameRing.ARRAYS:
        np.testing.assert_array_equal(getattr(other, name), getattr(ring, name))
    assert other.t == 7


def test_bad_shapes_and_obs_of_the_wrong_shape():
    with pytest.raises(ConfigError, match="frame_stack"):
        FrameRing(100, (4, 2, 2), np.uint8, 2, frame_stack=3, n_step=1)
    with pytest.raises(ConfigError, match=r"replay.capacity=10 .* = 12"):
        FrameRing(10, (4, 2, 2), np.uint8, 2, frame_stack=4, n_step=1)
    ring = FrameRing(100, (3,), np.float64, 2, frame_stack=1, n_step=1)
    assert ring.frames.dtype == np.float32 and ring.frames.shape == (101, 3)
    bad = Transition(np.zeros((3, 3)), np.zeros(3), np.zeros(3), np.zeros(3, bool),
                     np.zeros(3, bool), np.ones(3, bool))
    with pytest.raises(ValueError, match="obs shape"):
        ring.add(bad)
    assert ring.t == 0 and not ring.flags.any()  # nothing stored


def test_capacity_that_does_not_fit_is_refused(monkeypatch):
    monkeypatch.setattr(storage_mod, "available_memory_bytes", lambda: 10**9)
    with pytest.raises(ReplayMemoryError, match=r"needs 7,065,\d+,\d+ bytes but only "
                                                r"1,000,000,000") as err:
        ReplayBuffer(1_000_000, ATARI, np.uint8, 8, frame_stack=4)
    assert isinstance(err.value, MemoryError) and isinstance(err.value, ConfigError)
    assert "\n" not in str(err.value)


def test_memory_check_counts_the_sum_tree(monkeypatch):
    need = ReplayBuffer.bytes_needed(1000, ATARI, np.uint8, 8, prioritized=True)
    assert need - FrameRing.bytes_needed(1000, ATARI, np.uint8, 8) == 16 * 1024
    monkeypatch.setattr(storage_mod, "available_memory_bytes", lambda: need - 1)
    ReplayBuffer(1000, ATARI, np.uint8, 8, frame_stack=4)  # uniform: no tree, fits
    with pytest.raises(ReplayMemoryError, match=f"needs {need:,} bytes"):
        ReplayBuffer(1000, ATARI, np.uint8, 8, frame_stack=4, prioritized=True)
