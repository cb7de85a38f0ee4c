"""Progress of the toy study: from its first seconds, a line per finished piece of work with the elapsed time and
an estimate of what is left (work is weighted by samples x steps x dimension, which is what a piece costs)."""

from __future__ import annotations

import time


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """``plan(weight)`` each piece before starting, then ``done(weight, what)`` after each; lines go to ``log``
    at most every ``every`` seconds (and always for the first piece and the last)."""

    def __init__(self, log=print, every: float = 5.0):
        self.log, self.every = log, every
        self.total = self.finished = 0.0
        self.started = time.monotonic()
        self._last_line = -float("inf")
        self._pieces = 0

    def plan(self, weight: float) -> None:
        self.total += weight

    def done(self, weight: float, what: str) -> None:
        self.finished += weight
        self._pieces += 1
        now = time.monotonic()
        last = self.finished >= self.total
        if now - self._last_line < self.every and self._pieces > 1 and not last:
            return
        self._last_line = now
        elapsed = now - self.started
        left = elapsed / self.finished * (self.total - self.finished) if self.finished else float("nan")
        share = 100 * self.finished / self.total if self.total else 100.0
        eta = "" if last else f", about {_clock(left)} left"
        self.log(f"[toy] {share:5.1f}% after {_clock(elapsed)}{eta}: {what}")
