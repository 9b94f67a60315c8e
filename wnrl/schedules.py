"""Pure schedules: exploration epsilons and the prioritized-replay beta.

Every function is a plain function of its arguments (no state), so the actor,
the replay and the tests compute the same numbers. Steps are *env steps*
(a vector step of N envs counts N).
"""

from __future__ import annotations

import numpy as np


def linear_schedule(
    step: float, total_steps: float, start: float, end: float, fraction: float = 1.0
) -> float:
    """Go linearly from `start` (step 0) to `end` over the first `fraction * total_steps`
    steps, then stay at `end`. A zero-length schedule is at `end` from step 0."""
    duration = fraction * total_steps
    if duration <= 0:
        return float(end)
    frac = min(max(step / duration, 0.0), 1.0)
    return float(start + frac * (end - start))


def linear_epsilon(
    step: int, total_steps: int, start: float, end: float, fraction: float
) -> float:
    """Epsilon of the Nature-DQN linear schedule.

    Decays from `start` to `end` over the first `fraction * total_steps` env
    steps, constant at `end` afterwards (e.g. 1.0 -> 0.01 over 10% of training).
    """
    return linear_schedule(step, total_steps, start, end, fraction)


def priority_beta(step: int, total_steps: int, start: float, end: float) -> float:
    """Importance-sampling exponent of prioritized replay (Schaul et al. 2016).

    Anneals linearly from `start` to `end` over the whole run (`total_steps`
    env steps), so the correction is complete when training ends.
    """
    return linear_schedule(step, total_steps, start, end, 1.0)


def apex_epsilons(n: int, base: float = 0.4, alpha: float = 7.0) -> tuple[float, ...]:
    """Fixed per-actor epsilons of Ape-X (Horgan et al. 2018).

    `eps_i = base ** (1 + alpha * i / (n - 1))` for i in 0..n-1, so epsilons
    span from `base` down to `base ** (1 + alpha)` on a log scale; a single
    actor gets `base`. Returned as a tuple, ready for `ActorConfig.fixed_epsilons`.
    """
    if n < 1:
        raise ValueError(f"apex_epsilons: n={n} must be >= 1")
    if n == 1:
        return (float(base),)
    exponents = 1.0 + alpha * np.arange(n, dtype=np.float64) / (n - 1)
    return tuple(float(e) for e in np.power(base, exponents))
