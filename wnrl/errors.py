"""One home for user-facing errors: the `ConfigError` class and one-line messages.

Every bad input ends in one line naming the problem and exit code 2 (the CLI
catches `ConfigError`); `one_line` turns any exception's text into such a line.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value or key; the message is one line for the user."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `exc`'s message, whitespace collapsed, at most `limit`
    characters; the exception's type name if it has no message."""
    for line in str(exc).splitlines():
        if line.strip():
            return " ".join(line.split())[:limit]
    return type(exc).__name__
