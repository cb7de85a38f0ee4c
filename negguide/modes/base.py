"""What a guidance mode is: the branches it reads, the rows it asks for at a model evaluation, and how it combines
their predictions (one small class per mode, as diffusers' guiders are).

:class:`negguide.run.GuidanceRun` keeps the clock, the windows, the records and the per-step protocol; at every
evaluation it asks its mode for the :class:`Slots` of the step (the two CFG slots and the extra row groups),
lets it add rows at other states (:meth:`GuidanceMode.extend`: DNG's Hutchinson probes) and hands it the
predictions to combine. A run builds its own mode object (``spec.guidance_mode()``), which keeps the mode's state
for that pass (SLD's momentum, DNG's posterior); front-ends ask a fresh one what a spec reads
(:meth:`GuidanceMode.branches`, :attr:`GuidanceMode.needs_negative_prompt`).

Mode files import nothing that needs torch when they are imported: :class:`negguide.spec.GuidanceSpec` validates
with the modes' declarations in processes without torch (the WebUI panel's gradio venvs), so the arithmetic
imports :mod:`negguide.guidance` (and torch) where it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from ..frames import Frame
    from ..samplers import SamplerInfo
    from ..spec import GuidanceSpec

POSITIVE, NEGATIVE, EMPTY = "positive", "negative", "empty"
BRANCHES = (POSITIVE, NEGATIVE, EMPTY)


@dataclass(frozen=True)
class Rows:
    """One group of model rows: ``branch``'s conditioning at the sampler's state (``probe`` None) or at
    Hutchinson probe point ``probe``, for every image of the batch in order (``images`` None: ``B`` rows) or for
    the images ``images`` only (a step where only some images probe: one row each)."""

    branch: str
    probe: int | None = None
    images: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Slots:
    """A step's rows as a mode asks for them: the branches of the two CFG slots, the extra row groups, and whether
    the result differs from ``cfg(uncond slot, cond slot)`` (a CFG-owning backend then adds the correction)."""

    cond: str
    uncond: str
    extra: tuple[Rows, ...] = ()
    needs_correction: bool = True


@dataclass(frozen=True)
class PassContext:
    """What a mode may need of its sampling pass: the backend's frame and sampler, the batch, DNG's probe
    generator(s), record and ready tracker (see :class:`negguide.run.GuidanceRun`)."""

    frame: Frame
    sampler: SamplerInfo
    batch_size: int
    generator: Any = None
    record: str = "per_image"
    tracker: Any = None


class GuidanceMode:
    """Base of the modes. Class attributes declare what holds for every spec of the mode; methods answer for the
    mode's spec (``self.spec``) and, after :meth:`begin`, drive one sampling pass."""

    name: ClassVar[str]  # GuidanceSpec.mode
    title: ClassVar[str]  # how front-ends name it
    windowed: ClassVar[bool] = False  # takes a step window
    needs_prompt: ClassVar[bool] = False  # no meaning for class removal (no prompt there)
    reads_negative: ClassVar[bool] = True  # guides with a negative prompt (a front-end's "negative" input)
    settings: ClassVar[tuple[str, ...]] = ()  # the GuidanceSpec fields it reads beyond cfg_scale

    def __init__(self, spec: GuidanceSpec):
        self.spec = spec
        self.context: PassContext | None = None

    # --- what a spec reads (no state) -----------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.title

    @property
    def needs_negative_prompt(self) -> bool:
        """Whether a generation in this mode needs the user's negative prompt."""
        return self.reads_negative

    @property
    def empty(self) -> str:
        """The branch that plays the empty prompt's part (the unconditional model in class removal)."""
        return self.spec.empty_branch

    def slots(self, negative_active: bool) -> Slots:
        """The rows of a step where the negative prompt acts (``negative_active``, see the spec's window) or not."""
        raise NotImplementedError

    def branches(self) -> tuple[str, ...]:
        """Every branch a plan of this spec may name, in :data:`BRANCHES` order (what a backend encodes)."""
        activity = (True,) if self.spec.window is None else (True, False)
        named = set()
        for active in activity:
            slots = self.slots(active)
            named |= {slots.cond, slots.uncond, *(rows.branch for rows in slots.extra)}
        return tuple(b for b in BRANCHES if b in named)

    def adds_to_cfg(self) -> bool:
        """Whether some step of this spec differs from CFG on its two slots: a CFG-owning backend then evaluates
        extra rows or adds a correction (windows and DNS at ``s = w - 1`` only choose the slots)."""
        activity = (True,) if self.spec.window is None else (True, False)
        return any(self.slots(active).extra or self.slots(active).needs_correction for active in activity)

    def probes(self, sampler: SamplerInfo) -> bool:
        """Whether its plans may hold rows at other states than the sampler's (DNG's Hutchinson probes)."""
        return False

    def refusals(self, frame: Frame, sampler: SamplerInfo | None) -> list[tuple[bool, str]]:
        """``(ok, sentence)`` checks of a model's frame and sampler the mode has no meaning for."""
        return []

    # --- one sampling pass ---------------------------------------------------------------------------------------
    def begin(self, context: PassContext) -> None:
        """Called once by the run that owns this object, before its first evaluation."""
        self.context = context

    def extend(self, plan) -> None:
        """Add rows at other states to a step's plan (DNG's Hutchinson probes); nothing by default."""

    def combine(self, plan, p: Mapping[str, torch.Tensor], predictions) -> torch.Tensor:
        """The guided prediction from ``p`` (branch -> raw prediction at the sampler's state, the empty branch
        filled in for class removal) and the plan's raw ``predictions`` (per :class:`Rows`, probes included)."""
        raise NotImplementedError

    def correction(self, plan, p: Mapping[str, torch.Tensor], predictions) -> torch.Tensor:
        """What a CFG-owning backend adds to its own ``cfg(uncond slot, cond slot)``."""
        from ..guidance import cfg

        return self.combine(plan, p, predictions) - cfg(p[plan.uncond_branch], p[plan.cond_branch],
                                                        self.spec.cfg_scale)

    def finish(self, x: torch.Tensor, level) -> torch.Tensor | None:
        """After the last step, at the final state in the backend's frame (``level`` None: noise-free)."""
        return None

    def step_records(self) -> dict[int, dict]:
        """Per step, what the mode adds to the run's record (DNG: ``p``, ``probe_rows``, ``lambda``)."""
        return {}

    def tracker_name(self) -> str | None:
        """DNG's posterior tracker of the pass (None for modes without one)."""
        return None

    def average_extra_rows(self) -> float:
        """Model rows per image and step beyond CFG's two, averaged over the pass so far."""
        return float(len(self.slots(True).extra))
