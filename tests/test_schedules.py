"""Epsilon, beta and Ape-X schedules against hand-computed values."""

from __future__ import annotations

import pytest

from wnrl.schedules import apex_epsilons, linear_epsilon, linear_schedule, priority_beta


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 1.0), (50, 0.505), (100, 0.01), (101, 0.01), (1000, 0.01), (10**9, 0.01)],
)
def test_linear_epsilon(step: int, expected: float) -> None:
    # decays over 0.1 * 1000 = 100 env steps from 1.0 to 0.01
    assert linear_epsilon(step, 1000, 1.0, 0.01, 0.1) == pytest.approx(expected)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.4), (500, 0.7), (1000, 1.0), (2000, 1.0)])
def test_priority_beta(step: int, expected: float) -> None:
    assert priority_beta(step, 1000, 0.4, 1.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "total", "fraction", "expected"),
    [(0, 0, 1.0, 0.1), (5, 10, 0.0, 0.1), (5, 10, 1.0, 0.55), (15, 20, 0.5, 0.1)],
)
def test_linear_schedule(step: int, total: int, fraction: float, expected: float) -> None:
    assert linear_schedule(step, total, 1.0, 0.1, fraction) == pytest.approx(expected)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_apex_epsilons_span_base_to_base_pow_one_plus_alpha(n: int) -> None:
    eps = apex_epsilons(n, base=0.4, alpha=7)
    assert len(eps) == n
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4**8)
    assert all(a > b for a, b in zip(eps, eps[1:]))


def test_apex_epsilons_values() -> None:
    # n = 8, alpha = 7: exponents 1..8
    assert apex_epsilons(8) == pytest.approx(tuple(0.4 ** (1 + i) for i in range(8)))
    assert apex_epsilons(1) == (0.4,)
    with pytest.raises(ValueError, match="n=0"):
        apex_epsilons(0)
