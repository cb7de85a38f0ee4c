"""``np``: the negative prompt in the unconditional slot, ``N + w (P - N)`` (what the WebUIs and diffusers do),
inside an optional step window (Ban et al. 2024); outside it the empty prompt, i.e. plain CFG. No window: every
step, the stock behaviour."""

from __future__ import annotations

from .base import NEGATIVE, POSITIVE, GuidanceMode, Slots


class NegativePrompt(GuidanceMode):
    name = "np"
    title = "negative prompt"
    windowed = True
    settings = ("window",)

    @property
    def label(self) -> str:
        return "off (negative prompt)" if self.spec.window is None else "windowed negative prompt"

    @property
    def needs_negative_prompt(self) -> bool:
        return self.spec.window is not None  # without a window it is the stock CFG, with or without a negative

    def slots(self, negative_active: bool) -> Slots:
        return Slots(POSITIVE, NEGATIVE if negative_active else self.empty, needs_correction=False)

    def combine(self, plan, p, predictions):
        from ..guidance import cfg

        return cfg(p[plan.uncond_branch], p[POSITIVE], self.spec.cfg_scale)
