"""The replay-ratio rule and its blocking wrapper."""

from __future__ import annotations

import threading

import pytest

from wnrl.rate_limiter import BlockingRateLimiter, RateLimiter


@pytest.mark.parametrize("ratio", [0.25, 1.0, 2.0])
def test_greedy_sides_stay_within_tolerance(ratio: float) -> None:
    """Alternately let each side run as far as the rule allows: the ratio holds."""
    rule = RateLimiter(ratio=ratio, tolerance=0.1, start_step=100, slack_steps=8)
    steps = updates = 0
    while steps < 50_000:
        while rule.can_act(steps, updates, 8):
            steps += 8
        while rule.can_update(steps, updates):
            updates += 1
        if steps > 1000:
            target = (steps - 100) * ratio
            assert updates <= target
            assert updates >= target * 0.9 - 8 * ratio - 1


def test_no_update_before_learning_starts() -> None:
    rule = RateLimiter(ratio=0.25, tolerance=0.1, start_step=1000)
    assert not rule.can_update(999, 0)
    assert rule.can_act(500, 0, 8)
    assert rule.can_update(1004, 0) and not rule.can_update(1004, 1)


def test_blocking_wrapper_wakes_waiters_and_stops() -> None:
    lim = BlockingRateLimiter(RateLimiter(ratio=1.0, tolerance=0.0, start_step=0))
    assert not lim.wait_to_update(timeout=0.05)  # nothing acted yet
    t = threading.Thread(target=lambda: lim.acted(4))
    t.start()
    assert lim.wait_to_update(timeout=5.0)
    t.join()
    lim.stop()
    assert not lim.wait_to_act(10**6, timeout=5.0) and lim.stopped


def test_capped_band_keeps_a_slower_learner_at_the_target() -> None:
    """The learner is the slower side (one update per actor turn, at most): uncapped, the
    actor waits at the band's edge (0.9 x target); capped, the shortfall stays constant."""
    for cap, shortfall in ((None, 0.1), (64, 0.0)):
        rule = RateLimiter(ratio=0.5, tolerance=0.1, start_step=0, slack_steps=8,
                           max_ahead_steps=cap)
        steps = updates = 0
        while steps < 100_000:
            while rule.can_act(steps, updates, 8):
                steps += 8
            if rule.can_update(steps, updates):
                updates += 1
        target = steps * 0.5
        assert updates == pytest.approx(target * (1 - shortfall), abs=(64 + 8) * 0.5 + 1)
