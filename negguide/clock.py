"""Which sampler step a model evaluation belongs to.

Guidance decisions (the window, DNG's posterior update, SLD's momentum) are made once per sampler *step*,
but backends see model *evaluations*: second-order samplers (Heun, DPM2, DPM++ 2S/SDE) evaluate twice per
step, and both halves of a step must agree. Two ways to tell, depending on what the backend knows:

* :class:`EvaluationClock`: the run announces ``steps`` and ``evaluations`` (A1111/Forge: ``denoiser.steps``
  and ``denoiser.total_steps``, twice the steps for second-order samplers, whose last step evaluates once);
  evaluation ``k`` belongs to step ``k * steps // evaluations``. A sampler that makes fewer calls than
  announced (A1111's DDIM in img2img) simply never reaches the last steps.
* :class:`ScheduleClock`: the backend knows the noise-level schedule of the run (ComfyUI's
  ``sample_sigmas``, a diffusers scheduler's timesteps): an evaluation at level ``l`` belongs to the last
  step whose scheduled level is >= ``l``. The second evaluation of a Heun step happens at the *next*
  step's level and is counted as that step's start; the flow tracker integrates a state function, so its
  posterior does not depend on that choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_REL_TOL = 1e-5  # levels travel through float32 in most backends


@dataclass(frozen=True)
class EvaluationClock:
    steps: int
    evaluations: int | None = None  # None: one evaluation per step

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"a run needs at least one step, got {self.steps}")
        if self.evaluations is not None and self.evaluations < 1:
            raise ValueError(f"evaluations must be >= 1, got {self.evaluations}")

    def step_of(self, evaluation: int) -> int:
        total = self.evaluations or self.steps
        if total <= self.steps:
            return evaluation
        return evaluation * self.steps // total


@dataclass(frozen=True)
class ScheduleClock:
    levels: tuple[float, ...]  # decreasing noise levels of the run's steps (a trailing 0 is ignored)

    @classmethod
    def of(cls, levels) -> ScheduleClock:
        values = [float(v) for v in torch.as_tensor(levels).detach().cpu().reshape(-1).tolist()]
        if values and values[-1] == 0.0:
            values = values[:-1]
        if not values:
            raise ValueError("a schedule clock needs at least one noise level")
        if any(b > a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError("a schedule clock needs decreasing noise levels")
        return cls(tuple(values))

    @property
    def steps(self) -> int:
        return len(self.levels)

    def step_of(self, level: float) -> int:
        step = 0
        for i, scheduled in enumerate(self.levels):
            if scheduled >= level * (1 - _REL_TOL) - 1e-12:
                step = i
            else:
                break
        return step
