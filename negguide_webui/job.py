"""What the WebUIs force on the glue: a job per request, a sampling pass per denoiser, conditioning caches.

The WebUI builds a new sampler (so a new CFG denoiser) per batch iteration and for the hires pass. A
:class:`SamplingPass` starts when a denoiser evaluates for the first time (``denoiser.step == 0``) or a new
denoiser object appears, and holds that pass's core :class:`negguide.run.GuidanceRun`: fresh guidance state
(posteriors, records) per batch iteration and hires pass, automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from negguide import GuidanceRun, Plan

from .settings import NegGuideSettings


@dataclass
class PendingEvaluation:
    """One model evaluation between the WebUI's callbacks (A1111: on_cfg_denoiser .. on_cfg_after_cfg; Forge:
    on_cfg_denoiser .. the post-CFG function)."""

    plan: Plan
    first_cond_rows: list[int] | None = None  # A1111: each image's first cond row (AND prompts add rows)
    cond_rows: int = 0  # A1111: cond rows before the injected extra rows
    negative: object = None  # Forge: the negative prompt's conditioning, evaluated in the post-CFG function
    mask: torch.Tensor | None = None  # A1111 inpainting: 1 where the image may change
    correction: torch.Tensor | None = None  # A1111: computed in on_cfg_denoised, added after CFG


@dataclass
class SamplingPass:
    denoiser: object
    is_hr: bool
    batch_number: int
    run: GuidanceRun
    last_call: int = -1
    pending: PendingEvaluation | None = None
    cache: dict = field(default_factory=dict)  # conditionings built once per pass (markers, empty rows)


class Job:
    """State for one generation request (``process`` .. ``postprocess``)."""

    def __init__(self, settings: NegGuideSettings, encode_empty: Callable[[bool], object], p=None):
        self.settings = settings
        self.encode_empty = encode_empty  # (is_hr) -> one-row empty-prompt conditioning
        self.p = p
        self.passes: list[SamplingPass] = []
        self.current: SamplingPass | None = None
        self.batch_number = 0
        self.warnings: list[str] = []
        self._empty: dict = {}

    def warn(self, msg: str):
        if msg not in self.warnings:
            self.warnings.append(msg)
            print(f"[negguide] {msg}")

    def empty(self, is_hr: bool):
        if is_hr not in self._empty:
            self._empty[is_hr] = self.encode_empty(is_hr)
        return self._empty[is_hr]

    def pass_for(self, denoiser, is_hr: bool, make_run: Callable[[], GuidanceRun]) -> SamplingPass:
        call = int(getattr(denoiser, "step", 0) or 0)
        cur = self.current
        if cur is None or cur.denoiser is not denoiser or call <= cur.last_call:
            cur = SamplingPass(denoiser, is_hr, self.batch_number, make_run())
            self.passes.append(cur)
            self.current = cur
        cur.last_call = call
        return cur
