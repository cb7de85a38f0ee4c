"""The sampler-facing core: one :class:`GuidanceRun` per sampling pass, driven with three verbs.

``plan(x, level)``
    at every model evaluation: which conditionings (branches ``"positive"``, ``"negative"``, ``"empty"``)
    to evaluate and at which states (the sampler's state, or a Hutchinson probe point); a :class:`Plan`.
``combine(plan, predictions)``
    the raw model outputs of those rows -> the guided prediction, in the backend's own parametrisation.
``finish(x)``
    after the last step (DNG's tracker accounts for the final step).

The run keeps what every mode shares: the evaluation -> step mapping (second-order samplers), windows and
their img2img placement, and the per-step record. Its mode (:mod:`negguide.modes`, one class per mode) says
which rows a step evaluates and how they combine: the DNS prompt swap, the DNG posterior update once per step
with its probe points, SLD's momentum and their frame conversions (:mod:`negguide.frames`). A backend only
evaluates rows and hands the outputs back.

Two kinds of backend drive it:

* **combining** backends (diffusers loops, ComfyUI guiders, k-diffusion loops through
  :class:`negguide.denoiser.GuidedDenoiser`) evaluate ``plan.groups`` and use :meth:`GuidanceRun.combine`;
* **CFG-owning** backends (the A1111 / Forge CFG denoisers) keep their own two conditioning slots and CFG:
  they put ``plan.cond_branch`` / ``plan.uncond_branch`` in their cond / uncond slots, evaluate
  ``plan.extra`` on top, and add :meth:`GuidanceRun.correction` to their combined prediction when
  ``plan.needs_correction``. The correction is exactly what the mode adds to the slots' CFG.

Rows are grouped per branch: a :class:`Rows` group holds one row per image of the batch (``B`` rows), or, on a
step where only some images probe, one row per image of ``rows.images`` (:meth:`Plan.row_count`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .checks import raise_problems
from .clock import EvaluationClock, ScheduleClock
from .frames import Frame, NoiseLevel
from .modes import EMPTY, NEGATIVE, POSITIVE, PassContext, Rows, Slots
from .samplers import SamplerInfo
from .spec import GuidanceSpec

__all__ = ["EMPTY", "NEGATIVE", "POSITIVE", "GuidanceRun", "Plan", "Rows", "check_compatible"]


@dataclass
class Plan:
    """What to evaluate at one model evaluation. ``groups`` lists every row group a combining backend
    evaluates, the two slot groups first; ``extra`` is what a CFG-owning backend adds to its own slots."""

    step: int
    first: bool  # the first evaluation of its step
    negative_active: bool  # the negative prompt acts at this step
    cond_branch: str
    uncond_branch: str
    extra: tuple[Rows, ...]
    needs_correction: bool
    x: torch.Tensor
    level: NoiseLevel
    probe_directions: torch.Tensor | None = None  # [K, n, ...], in the k-diffusion frame
    probe_inputs: torch.Tensor | None = None  # [K, n, ...], in the backend's frame (n: the probing images)

    @property
    def groups(self) -> tuple[Rows, ...]:
        slots = [Rows(self.cond_branch)]
        if self.uncond_branch != self.cond_branch:
            slots.append(Rows(self.uncond_branch))
        return tuple(slots) + tuple(r for r in self.extra if r not in slots)

    def inputs(self, rows: Rows) -> torch.Tensor:
        """The states to evaluate ``rows`` at: ``[B, ...]``, or one per image of ``rows.images``."""
        return self.x if rows.probe is None else self.probe_inputs[rows.probe]

    def row_count(self, rows: Rows) -> int:
        return self.x.shape[0] if rows.images is None else len(rows.images)

    def row_layout(self) -> tuple[tuple[str, int], ...]:
        """``(branch, image)`` of every row of :meth:`stacked_inputs`: what conditioning each row takes."""
        batch = range(self.x.shape[0])
        return tuple((r.branch, i) for r in self.groups for i in (batch if r.images is None else r.images))

    def stacked_inputs(self) -> torch.Tensor:
        """Every group's states in ``groups`` order: one batched model call."""
        return torch.cat([self.inputs(r) for r in self.groups])

    def split(self, output: torch.Tensor) -> dict[Rows, torch.Tensor]:
        """A batched output in ``groups`` order -> one tensor per group."""
        groups = self.groups
        sizes = [self.row_count(r) for r in groups]
        if output.shape[0] != sum(sizes):
            raise ValueError(f"expected {sum(sizes)} output rows ({len(groups)} groups), got {output.shape[0]}")
        return dict(zip(groups, output.split(sizes), strict=True))


def check_compatible(spec: GuidanceSpec, frame: Frame, sampler: SamplerInfo | None = None) -> None:
    """Refuse a mode that has no meaning for a model's frame and sampler (before any model is loaded or run); what a
    flow model is comes from the frame's noise level, whatever its model outputs."""
    raise_problems(spec.guidance_mode().refusals(frame, sampler))


class GuidanceRun:
    """Per-image guidance state for one sampling pass of ``batch_size`` images.

    ``steps``: the pass's step count (window placement, the evaluation clock). ``clock``: an
    :class:`~negguide.clock.EvaluationClock` (default: one evaluation per step) or a
    :class:`~negguide.clock.ScheduleClock`; :meth:`plan` also takes the step directly.
    ``schedule_steps``: the pass is the tail of a run of that many steps (img2img; see
    :mod:`negguide.windows`). ``record``: DNG's per-step record, see
    :class:`~negguide.dng.DynamicNegativeGuidance` (``"none"`` also drops the step/window record).
    ``tracker``: a ready DNG tracker object instead of the configured one (exact oracles). ``generator``:
    for DNG's Hutchinson probe directions; a list of one generator per image makes every image's guidance
    independent of the rest of the batch (image i of a batch == a single run with generator i).

    ``mode`` is the run's :class:`~negguide.modes.base.GuidanceMode`: the rows of a step and their combination
    come from it, the run keeps the clock, the windows and the records.
    """

    def __init__(self, spec: GuidanceSpec, batch_size: int, frame: Frame, sampler: SamplerInfo,
                 steps: int | None = None, clock: EvaluationClock | ScheduleClock | None = None,
                 schedule_steps: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 record: str = "per_image", tracker=None):
        self.mode = spec.guidance_mode()
        raise_problems(self.mode.refusals(frame, sampler))
        if clock is None and steps is None:
            raise ValueError("a run needs its step count (steps=...) or a clock")
        self.spec, self.batch_size, self.frame, self.sampler = spec, batch_size, frame, sampler
        self.clock = clock or EvaluationClock(steps)
        self.steps = steps or self.clock.steps
        self.schedule_steps = schedule_steps
        self.record = record
        self.mode.begin(PassContext(frame, sampler, batch_size, generator, record, tracker))
        self._evaluations = 0
        self._last_step = -1
        self._records: list[tuple] = []  # (step, sigma of image 0 as a tensor, negative active)

    # --- plan -------------------------------------------------------------------------------------------
    def tracker_name(self) -> str | None:
        """DNG's posterior tracker of this pass (None for other modes and at lambda0 = 0)."""
        return self.mode.tracker_name()

    def negative_active(self, step: int, noise: NoiseLevel) -> bool:
        window = self.spec.window
        if window is None:
            return True
        n = max(self.steps, step + 1)
        schedule = self.schedule_steps if (self.schedule_steps or 0) > n else None
        sigma = float(noise.sigma[0]) if window.unit == "sigma" else None  # the only host read of a level
        return window.active(step, n, sigma, schedule)

    def step_of(self, level, evaluation: int | None = None) -> int:
        """The sampler step of a model evaluation at backend noise ``level`` (the run's clock; ``evaluation``: the
        backend's own evaluation counter, else the run's)."""
        if isinstance(self.clock, ScheduleClock):
            return self.clock.step_of(float(torch.as_tensor(level).reshape(-1)[0]))
        return self.clock.step_of(self._evaluations if evaluation is None else evaluation)

    def slots(self, step: int, level) -> Slots:
        """The rows at the sampler's state that ``step`` asks for (what :meth:`plan` will name, probes aside): for
        backends that must choose their batches before they see the state (diffusers' guiders)."""
        return self.mode.slots(self.negative_active(step, self.frame.noise_level(level, self.batch_size)))

    def plan(self, x: torch.Tensor, level, step: int | None = None, evaluation: int | None = None) -> Plan:
        """The rows of one model evaluation at backend state ``x`` ([B, ...]) and backend noise ``level``.

        The step comes from ``step`` if given, else from the run's clock (``evaluation``: the backend's own
        evaluation counter, else the run counts evaluations itself)."""
        if x.shape[0] != self.batch_size:
            raise ValueError(f"the run was made for {self.batch_size} images, the state has {x.shape[0]} rows")
        noise = self.frame.noise_level(level, self.batch_size)
        step = self.step_of(level, evaluation) if step is None else step
        self._evaluations += 1
        first = step != self._last_step
        self._last_step = step
        active = self.negative_active(step, noise)
        if first and self.record != "none":
            self._records.append((step, noise.sigma[0], active))
        slots = self.mode.slots(active)
        plan = Plan(step, first, active, slots.cond, slots.uncond, slots.extra, slots.needs_correction, x, noise)
        self.mode.extend(plan)
        return plan

    # --- combine ------------------------------------------------------------------------------------------
    def combine(self, plan: Plan, predictions: Mapping[Rows, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """The guided prediction (backend parametrisation) from the raw outputs of ``plan.groups``: a mapping
        ``Rows -> [B, ...]`` or one batched tensor in ``groups`` order."""
        preds = plan.split(predictions) if torch.is_tensor(predictions) else predictions
        return self.mode.combine(plan, self._branch_predictions(plan, preds), preds)

    def correction(self, plan: Plan, predictions: Mapping[Rows, torch.Tensor]) -> torch.Tensor:
        """For CFG-owning backends: what to add to their own ``cfg(uncond slot, cond slot)``, from the slot
        and extra predictions (DNG's, ``-lambda (N - P)``, holds whatever the backend's uncond rows and CFG
        scale)."""
        return self.mode.correction(plan, self._branch_predictions(plan, predictions), predictions)

    def _branch_predictions(self, plan: Plan, preds: Mapping[Rows, torch.Tensor]) -> dict[str, torch.Tensor]:
        wrong = [f"{r}: {t.shape[0]} rows, expected {plan.row_count(r)}" for r, t in preds.items()
                 if t.shape[0] != plan.row_count(r)]
        if wrong:  # a backend's bug (e.g. every image evaluated for a probe subset): say so before the math does
            raise ValueError("predictions do not match the plan's rows (Rows.images lists the only images to "
                             "evaluate): " + "; ".join(wrong))
        out = {r.branch: t for r, t in preds.items() if r.probe is None}
        if self.spec.class_removal:
            out[EMPTY] = out[POSITIVE]
        return out

    # --- finish and records ---------------------------------------------------------------------------------
    def finish(self, x: torch.Tensor, level=None) -> torch.Tensor | None:
        """After the last step, at the final state (``level`` None: noise-free). Returns DNG's final
        posterior per image (None for other modes)."""
        return self.mode.finish(x, level)

    def average_extra_rows(self) -> float:
        """Model rows per image and step beyond CFG's two, averaged over the run so far (DNG: the negative branch
        and the probes actually spent; 0 for modes without extra rows per image)."""
        return self.mode.average_extra_rows()

    @property
    def records(self) -> list[dict]:
        """Per step: ``step``, ``sigma`` (k-diffusion, image 0), ``negative_active``, and for DNG ``p``,
        ``probe_rows`` and ``lambda`` per image (converted to Python numbers on read, never inside the sampling
        loop)."""
        by_step = self.mode.step_records()
        out = []
        for step, sigma, active in self._records:
            row = {"step": step, "sigma": float(sigma), "negative_active": active}
            row.update(by_step.get(step, {}))
            out.append(row)
        return out
