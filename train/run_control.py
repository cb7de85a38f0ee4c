"""When a training loop checkpoints or stops besides its step schedule: every `checkpoint_minutes` of wall time,
when the `--time-budget` is spent, and on Ctrl-C.

All three act only between optimizer steps, so every checkpoint holds the state after a whole step and a resumed
run continues from that step exactly (batches, noise and dropout are functions of (seed, step)). The first Ctrl-C
therefore only raises a flag that the loop reads after its step; a second one stops at once, and the newest
checkpoint on disk is where to resume.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from train.errors import UsageError

DEFAULT_CHECKPOINT_MINUTES = 10.0


def check_run_options(time_budget_s: float | None, checkpoint_minutes: float, mixed_precision: str) -> None:
    if time_budget_s is not None and time_budget_s <= 0:
        raise UsageError(f"--time-budget must be > 0 seconds, got {time_budget_s}")
    if checkpoint_minutes < 0:
        raise UsageError(f"--checkpoint-minutes must be >= 0 (0: off), got {checkpoint_minutes}")
    if mixed_precision not in ("auto", "no", "bf16"):
        raise UsageError(f"--mixed-precision must be auto, no or bf16, got {mixed_precision!r}")


def seconds_since_process_start() -> float:
    """Wall time this process has run so far (0 where /proc is missing): what starting Python and importing torch
    took before a command could start its own clock."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def now() -> float:
    """The clock of budgets and checkpoint intervals (a module function, so that tests can move it)."""
    return time.monotonic()


@dataclass
class Decision:
    """What to do after the step just taken."""

    out_of_time: bool = False
    interrupted: bool = False
    checkpoint_due: bool = False

    @property
    def stop(self) -> bool:
        return self.out_of_time or self.interrupted

    @property
    def checkpoint(self) -> bool:
        return self.stop or self.checkpoint_due

    def as_list(self) -> list[bool]:
        return [self.out_of_time, self.interrupted, self.checkpoint_due]


class RunControl:
    """Tracks the budget and checkpoint clock of one command; `with RunControl(...)` defers Ctrl-C to step ends.

    The clock starts when the command starts, so `time_budget_s` covers loading data and building the model too.
    `checkpoint_minutes` 0 turns time-based checkpoints off.
    """

    def __init__(self, time_budget_s: float | None, checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES):
        self.started = self.last_checkpoint = now()
        self.time_budget_s = time_budget_s
        self.checkpoint_s = checkpoint_minutes * 60
        self.interrupted = False
        self._previous_handler = None

    def seconds_left(self) -> float | None:
        return None if self.time_budget_s is None else self.time_budget_s - (now() - self.started)

    def decide(self, reserve_s: float = 0.0) -> Decision:
        """After a step: stop when less than `reserve_s` (the work still to do after the loop) is left."""
        t = now()
        out_of_time = self.time_budget_s is not None and self.time_budget_s - (t - self.started) <= reserve_s
        due = self.checkpoint_s > 0 and t - self.last_checkpoint >= self.checkpoint_s
        return Decision(out_of_time, self.interrupted, due)

    def checkpointed(self) -> None:
        self.last_checkpoint = now()

    def __enter__(self) -> RunControl:
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *_) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_sigint(self, _signum, _frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("\nCtrl-C: stopping after this step with a checkpoint (press again to stop now)", file=sys.stderr)
