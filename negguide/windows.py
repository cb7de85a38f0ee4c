"""Step windows: where in the sampling run the negative prompt acts (Ban et al. 2024).

Outside the window the unconditional branch gets the empty prompt. Ban et al. use steps 5-15 of 30
(Sec. 6): the negative prompt only starts to attend to the right region after the "critical step", and
applied in the first steps it can even create the object it names ("reverse activation", a window that
only covers the first steps).

A window has one of three units:

``step``
    1-based sampler step numbers, both bounds inclusive: ``StepWindow(5, 15)`` is active on steps
    5, 6, ..., 15 (11 steps), i.e. 0-based indices 4..14.
``fraction``
    progress through the run, half-open ``[start, end)``: step index ``i`` of ``n`` is active when
    ``start <= i / n < end``. ``StepWindow(4/30, 15/30, "fraction")`` equals steps 5-15 of 30 and scales to
    any step count.
``sigma``
    noise level, both bounds inclusive, ``start`` the larger one: active while ``end <= sigma <= start``.
    Independent of the step count and the discretisation. ``start = inf`` covers a rectified-flow model's
    first step (t = 1, where sigma is infinite).

A window that ends before it starts (steps ``6-5``, fractions ``0.5-0.5``, sigmas ``1-5``) is empty: the
negative prompt acts on no step, exactly as if it were empty.

Decisions are made per sampler step. Samplers that evaluate the model twice per step (Heun, DPM2,
DPM++ 2S/SDE) use the decision of the step the evaluation belongs to, so both halves of a step agree.

A pass that runs fewer steps (a hires pass, img2img with denoising strength < 1) counts its own steps:
step 1 is the first step it runs. When ``schedule_steps`` is given, the pass is instead placed as the tail
of a run of that many steps (img2img runs the last ``t_enc`` steps of a ``steps``-step schedule), so a
step window keeps its position in the full schedule and steps the pass skipped are simply not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import SettingsError, is_finite_number, raise_problems

UNITS = ("step", "fraction", "sigma")

_EPS = 1e-9  # fractions like 4/30 must compare equal to i/n computed the other way round


@dataclass(frozen=True)
class StepWindow:
    start: float
    end: float
    unit: str = "step"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise SettingsError([f"window unit must be one of {UNITS}, got {self.unit!r}"])
        open_start = self.unit == "sigma" and self.start == math.inf  # from the very first (pure-noise) step
        if not ((open_start or is_finite_number(self.start)) and is_finite_number(self.end)):
            raise SettingsError([f"window bounds must be finite numbers (a sigma window may start at inf), got "
                                 f"{self.start!r}-{self.end!r}"])
        if self.unit == "step":
            whole = self.start == int(self.start) and self.end == int(self.end)
            raise_problems([
                (whole, f"step window bounds must be whole steps, got {self.start:g}-{self.end:g}"),
                (not whole or self.start >= 1, f"step windows count from step 1, got start {self.start:g}"),
                (not whole or self.end >= 0, f"a step window cannot end before step 0, got end {self.end:g}"),
            ])
        elif self.unit == "fraction":
            raise_problems([(0.0 <= self.start <= 1.0 and 0.0 <= self.end <= 1.0,
                             f"fraction window bounds must be in [0, 1], got {self.start:g}-{self.end:g}")])
        else:
            raise_problems([(self.start >= 0 and self.end >= 0, "sigma window bounds must be >= 0")])

    @property
    def is_empty(self) -> bool:
        """A window that ends before it starts acts on no step (a well-defined setting: the negative prompt is
        never used, the baseline of a sweep)."""
        if self.unit == "step":
            return self.end < self.start
        if self.unit == "fraction":
            return self.end <= self.start
        return self.end > self.start

    @classmethod
    def paper_default(cls) -> StepWindow:
        """Ban et al.'s default, steps 5-15 of 30, as a fraction so that it scales to any step count."""
        return cls(4 / 30, 15 / 30, "fraction")

    @classmethod
    def adaptive_default(cls) -> StepWindow:
        """The adaptive window's default: any start from the first step on, the paper default's end (step 15 of
        30), as a fraction."""
        return cls(0.0, 15 / 30, "fraction")

    @classmethod
    def always(cls) -> StepWindow:
        return cls(0.0, 1.0, "fraction")

    @classmethod
    def never(cls) -> StepWindow:
        return cls(0.0, 0.0, "fraction")

    def active(self, step_index: int, num_steps: int, sigma: float | None = None,
               schedule_steps: int | None = None) -> bool:
        """Whether the negative prompt acts at 0-based ``step_index`` of a pass of ``num_steps`` steps.

        ``sigma`` (the noise level at the start of the step) is required for sigma windows.
        ``schedule_steps``: see the module docstring (img2img placement).
        """
        if num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        if self.is_empty:
            return False
        if self.unit == "sigma":
            if sigma is None:
                raise ValueError("a sigma window needs the step's noise level")
            return self.end - _EPS <= sigma <= self.start + _EPS
        total = num_steps if schedule_steps is None else schedule_steps
        if total < num_steps:
            raise ValueError(f"schedule_steps ({total}) cannot be smaller than the steps run ({num_steps})")
        position = total - num_steps + step_index  # 0-based index in the full schedule
        if self.unit == "step":
            return self.start <= position + 1 <= self.end
        progress = position / total
        return self.start - _EPS <= progress < self.end - _EPS

    def mask(self, num_steps: int, sigmas=None, schedule_steps: int | None = None) -> list[bool]:
        """Activity of every step of a pass; ``sigmas`` (per step start) needed for sigma windows."""
        return [self.active(i, num_steps, None if sigmas is None else float(sigmas[i]), schedule_steps)
                for i in range(num_steps)]

    def describe(self) -> str:
        if self.is_empty:
            return "no step (empty window)"
        if self.unit == "step":
            return f"steps {int(self.start)}-{int(self.end)}"
        if self.unit == "fraction":
            return f"{self.start:.3g}-{self.end:.3g} of the run"
        return f"sigma {self.start:.4g}..{self.end:.4g}"
