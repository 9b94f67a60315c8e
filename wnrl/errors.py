"""One home for user-facing errors: bad input (`ConfigError`), a training run that cannot
go on (`TrainingFailed` and its kinds), and one-line messages.

Every bad input ends in one line naming the problem and exit code 2 (the CLI
catches `ConfigError`); `one_line` turns any exception's text into such a line.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value or key; the message is one line for the user."""


class TrainingFailed(RuntimeError):
    """Training cannot go on (one-line message; the run exits 1, nothing more is saved)."""


class NonFiniteError(TrainingFailed):
    """A NaN or inf loss, Q-value or weight: training stops without checkpointing it."""


class EnvError(TrainingFailed):
    """The environment raised while stepping."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `exc`'s message, whitespace collapsed, at most `limit`
    characters; the exception's type name if it has no message."""
    for line in str(exc).splitlines():
        if line.strip():
            return " ".join(line.split())[:limit]
    return type(exc).__name__
