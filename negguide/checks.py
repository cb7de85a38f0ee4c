"""Settings errors: every problem of a configuration, as sentences a user can act on, raised at once."""

from __future__ import annotations

import math
from collections.abc import Iterable


class SettingsError(ValueError):
    """Invalid settings; ``problems`` holds one sentence per problem (``str(error)`` joins them)."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def raise_problems(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise :class:`SettingsError` with the message of every failed ``(ok, message)`` check."""
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise SettingsError(problems)


def is_finite_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
