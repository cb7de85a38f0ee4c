"""The sampler-facing core: one :class:`GuidanceRun` per sampling pass, driven with three verbs.

``plan(x, level)``
    at every model evaluation: which conditionings (branches ``"positive"``, ``"negative"``, ``"empty"``)
    to evaluate and at which states (the sampler's state, or a Hutchinson probe point); a :class:`Plan`.
``combine(plan, predictions)``
    the raw model outputs of those rows -> the guided prediction, in the backend's own parametrisation.
``finish(x)``
    after the last step (DNG's tracker accounts for the final step).

The run owns everything a sampler step needs: the evaluation -> step mapping (second-order samplers),
windows and their img2img placement, the DNS prompt swap, the DNG posterior update once per step with its
probe points, SLD's momentum, the frame conversions of :mod:`negguide.frames` and the per-step record.
A backend only evaluates rows and hands the outputs back.

Two kinds of backend drive it:

* **combining** backends (diffusers loops, ComfyUI guiders, k-diffusion loops through
  :class:`negguide.denoiser.GuidedDenoiser`) evaluate ``plan.groups`` and use :meth:`GuidanceRun.combine`;
* **CFG-owning** backends (the A1111 / Forge CFG denoisers) keep their own two conditioning slots and CFG:
  they put ``plan.cond_branch`` / ``plan.uncond_branch`` in their cond / uncond slots, evaluate
  ``plan.extra`` on top, and add :meth:`GuidanceRun.correction` to their combined prediction when
  ``plan.needs_correction``. The correction is exactly what the mode adds to the slots' CFG.

Rows are grouped per branch: a :class:`Rows` group holds one row per image (``B`` rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from . import guidance as G
from .checks import raise_problems
from .clock import EvaluationClock, ScheduleClock
from .dng import DynamicNegativeGuidance
from .frames import Frame, NoiseLevel
from .samplers import SamplerInfo
from .sld import SafeLatentDiffusion
from .spec import GuidanceSpec

POSITIVE, NEGATIVE, EMPTY = "positive", "negative", "empty"


@dataclass(frozen=True)
class Rows:
    """One group of model rows: ``branch``'s conditioning at the sampler's state (``probe`` None) or at
    Hutchinson probe point ``probe``, for every image of the batch in order (``images`` None: ``B`` rows) or for
    the images ``images`` only (a step where only some images probe: one row each)."""

    branch: str
    probe: int | None = None
    images: tuple[int, ...] | None = None


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
    """Refuse a mode that has no meaning for a model's parametrisation and sampler (before any model is loaded
    or run)."""
    flow = frame.prediction == "flow"
    stochastic_transition = (sampler is not None and sampler.injects_noise and spec.mode == "dng"
                             and spec.dng.active and spec.dng.resolved_tracker(sampler) == "transition")
    raise_problems([
        (not (spec.mode == "sld" and flow), "SLD's threshold is defined in eps units of a VP/VE model; it has no "
                                            "meaning for a rectified-flow model"),
        (not (stochastic_transition and flow), "DNG's transition tracker models the ancestral step of a VP/VE "
                                               "model; a stochastic rectified-flow sampler re-noises differently: "
                                               "choose the flow-moment or flow-hutchinson tracker, or a deterministic "
                                               "sampler"),
    ])


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
    """

    def __init__(self, spec: GuidanceSpec, batch_size: int, frame: Frame, sampler: SamplerInfo,
                 steps: int | None = None, clock: EvaluationClock | ScheduleClock | None = None,
                 schedule_steps: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 record: str = "per_image", tracker=None):
        check_compatible(spec, frame, sampler)
        if clock is None and steps is None:
            raise ValueError("a run needs its step count (steps=...) or a clock")
        self.spec, self.batch_size, self.frame, self.sampler = spec, batch_size, frame, sampler
        self.clock = clock or EvaluationClock(steps)
        self.steps = steps or self.clock.steps
        self.schedule_steps = schedule_steps
        self.generator, self.record, self._tracker = generator, record, tracker
        self.dng: DynamicNegativeGuidance | None = None  # built at the first evaluation (needs the device)
        self.sld = SafeLatentDiffusion(spec.sld) if spec.mode == "sld" else None
        self._evaluations = 0
        self._last_step = -1
        self._records: list[tuple] = []  # (step, sigma of image 0 as a tensor, negative active)

    # --- plan -------------------------------------------------------------------------------------------
    @property
    def dng_active(self) -> bool:
        return self.spec.mode == "dng" and self.spec.dng.active

    def tracker_name(self) -> str | None:
        if not self.dng_active:
            return None
        return self._tracker.name if self._tracker is not None else self.spec.dng.resolved_tracker(self.sampler)

    def negative_active(self, step: int, noise: NoiseLevel) -> bool:
        window = self.spec.window
        if window is None:
            return True
        n = max(self.steps, step + 1)
        schedule = self.schedule_steps if (self.schedule_steps or 0) > n else None
        sigma = float(noise.sigma[0]) if window.unit == "sigma" else None  # the only host read of a level
        return window.active(step, n, sigma, schedule)

    def plan(self, x: torch.Tensor, level, step: int | None = None, evaluation: int | None = None) -> Plan:
        """The rows of one model evaluation at backend state ``x`` ([B, ...]) and backend noise ``level``.

        The step comes from ``step`` if given, else from the run's clock (``evaluation``: the backend's own
        evaluation counter, else the run counts evaluations itself)."""
        if x.shape[0] != self.batch_size:
            raise ValueError(f"the run was made for {self.batch_size} images, the state has {x.shape[0]} rows")
        noise = self.frame.noise_level(level, self.batch_size)
        if step is None:
            if isinstance(self.clock, ScheduleClock):
                step = self.clock.step_of(float(torch.as_tensor(level).reshape(-1)[0]))
            else:
                step = self.clock.step_of(self._evaluations if evaluation is None else evaluation)
        self._evaluations += 1
        first = step != self._last_step
        self._last_step = step
        active = self.negative_active(step, noise)
        if first and self.record != "none":
            self._records.append((step, noise.sigma[0], active))
        plan = self._rows(step, first, active, x, noise)
        if self.dng_active and self.dng is None:
            self.dng = DynamicNegativeGuidance(self.spec.dng, self.batch_size, self.sampler, x.device,
                                               self.generator, self.record, self._tracker)
        if self.dng_active and first and noise.informative() and self.dng.probe_pairs:
            request = self.dng.probe_points(self.frame.to_ve(x, noise), noise.sigma, step)
            if request is not None:
                sub = noise if request.images is None else noise.select(request.images)
                images = None if request.images is None else tuple(request.images.tolist())
                plan.probe_directions = request.directions
                plan.probe_inputs = torch.stack([self.frame.from_ve(p, sub) for p in request.points])
                plan.extra += tuple(Rows(b, k, images) for k in range(request.points.shape[0])
                                    for b in (POSITIVE, NEGATIVE))
        return plan

    def _rows(self, step: int, first: bool, active: bool, x: torch.Tensor, noise: NoiseLevel) -> Plan:
        spec, empty = self.spec, self.spec.empty_branch
        mode = spec.mode
        cond, uncond, extra, correction = POSITIVE, empty, (), True
        if mode == "np":
            uncond, correction = (NEGATIVE if active else empty), False
        elif mode == "np3":
            extra, correction = ((Rows(NEGATIVE),), True) if active else ((), False)
        elif mode == "dns":
            cond, uncond = empty, POSITIVE
            correction = abs(spec.resolved_dns_scale - (spec.cfg_scale - 1.0)) > 1e-12
        elif mode == "dng":
            extra, correction = ((Rows(NEGATIVE),), True) if spec.dng.active else ((), False)
        else:  # sld, perp_neg
            extra = (Rows(NEGATIVE),)
        return Plan(step, first, active, cond, uncond, extra, correction, x, noise)

    # --- combine ------------------------------------------------------------------------------------------
    def combine(self, plan: Plan, predictions: Mapping[Rows, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """The guided prediction (backend parametrisation) from the raw outputs of ``plan.groups``: a mapping
        ``Rows -> [B, ...]`` or one batched tensor in ``groups`` order."""
        preds = plan.split(predictions) if torch.is_tensor(predictions) else predictions
        p = self._branch_predictions(plan, preds)
        spec, w = self.spec, self.spec.cfg_scale
        mode = spec.mode
        if mode == "np":
            return G.cfg(p[plan.uncond_branch], p[POSITIVE], w)
        if mode == "np3":
            if plan.negative_active:
                return G.negative_prompt_3term(p[EMPTY], p[POSITIVE], p[NEGATIVE], w)
            return G.cfg(p[EMPTY], p[POSITIVE], w)
        if mode == "dns":
            return G.diffusion_negative(p[EMPTY], p[POSITIVE], spec.resolved_dns_scale)
        if mode == "dng":
            if not spec.dng.active:
                return G.cfg(p[EMPTY], p[POSITIVE], w)
            return G.dng_text(p[EMPTY], p[POSITIVE], p[NEGATIVE], w, self._dng_lambda(plan, preds, p))
        if mode == "perp_neg":
            return G.perp_neg(p[EMPTY], p[POSITIVE], p[NEGATIVE], w, spec.perp_neg_scale)
        return self._sld(plan, p)

    def correction(self, plan: Plan, predictions: Mapping[Rows, torch.Tensor]) -> torch.Tensor:
        """For CFG-owning backends: what to add to their own ``cfg(uncond slot, cond slot)``, from the slot
        and extra predictions. DNG's correction, ``-lambda (N - P)``, depends on neither the empty branch nor
        the backend's CFG scale, so it stays right where the backend skips its uncond rows (NGMS, CFG 1)."""
        p = self._branch_predictions(plan, predictions)
        if self.spec.mode == "dng" and self.spec.dng.active:
            return G.dng_term(p[POSITIVE], p[NEGATIVE], self._dng_lambda(plan, predictions, p))
        guided = self.combine(plan, predictions)
        return guided - G.cfg(p[plan.uncond_branch], p[plan.cond_branch], self.spec.cfg_scale)

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

    def _dng_lambda(self, plan: Plan, preds: Mapping[Rows, torch.Tensor], p: dict) -> torch.Tensor:
        """lambda per image; the posterior moves at the first evaluation of a step (where informative)."""
        if not (plan.first and plan.level.informative()):
            return self.dng.current_lambda()
        frame, x, noise = self.frame, plan.x, plan.level
        probe_predictions = None
        if plan.probe_directions is not None:
            probes = [r for r in plan.extra if r.probe is not None]
            images = probes[0].images
            sub = noise if images is None else noise.select(torch.tensor(images))
            at = {b: torch.stack([frame.denoised(preds[r], plan.probe_inputs[r.probe], sub)
                                  for r in probes if r.branch == b]) for b in (POSITIVE, NEGATIVE)}
            probe_predictions = (plan.probe_directions, at[POSITIVE], at[NEGATIVE])
        return self.dng.observe(plan.step, frame.to_ve(x, noise), noise.sigma, frame.denoised(p[POSITIVE], x, noise),
                                frame.denoised(p[NEGATIVE], x, noise), probe_predictions)

    def _sld(self, plan: Plan, p: dict) -> torch.Tensor:
        """SLD's threshold lives in eps units: convert, guide, convert back (in float32 at least: eps at a
        small noise level overflows half precision)."""
        frame, noise, like = self.frame, plan.level, p[POSITIVE]
        x = plan.x.to(G._compute_dtype(like))
        eps = {b: frame.eps(t.to(x.dtype), x, noise) for b, t in p.items()}
        guided = self.sld(eps[EMPTY], eps[POSITIVE], eps[NEGATIVE], self.spec.cfg_scale, step=plan.step)
        return G._finish(frame.from_eps(guided, x, noise), like)

    # --- finish and records ---------------------------------------------------------------------------------
    def finish(self, x: torch.Tensor, level=None) -> torch.Tensor | None:
        """After the last step, at the final state (``level`` None: noise-free). Returns DNG's final
        posterior per image (None for other modes)."""
        if self.dng is None:
            return None
        if level is None:
            return self.dng.finish(x, 0.0)
        noise = self.frame.noise_level(level, x.shape[0])
        return self.dng.finish(self.frame.to_ve(x, noise), noise.sigma)

    def average_extra_rows(self) -> float:
        """Model rows per image and step beyond CFG's two, averaged over the run so far (DNG: the negative branch
        and the probes actually spent; 0 for modes without extra rows per image)."""
        if self.dng is not None:
            return self.dng.average_extra_rows()
        return 1.0 if self.spec.mode in ("np3", "sld", "perp_neg") else 0.0

    @property
    def records(self) -> list[dict]:
        """Per step: ``step``, ``sigma`` (k-diffusion, image 0), ``negative_active``, and for DNG ``p`` and
        ``lambda`` per image (converted to Python numbers on read, never inside the sampling loop)."""
        dng = {r["step"]: r for r in self.dng.records} if self.dng is not None else {}
        out = []
        for step, sigma, active in self._records:
            row = {"step": step, "sigma": float(sigma), "negative_active": active}
            if step in dng:
                row.update(p=dng[step]["p"], probe_rows=dng[step]["probe_rows"], **{"lambda": dng[step]["lambda"]})
            out.append(row)
        return out
