"""``np3``: the 3-term negative prompt ``E + w (P - N)`` (Desai & Vasconcelos, Eq. 4) inside an optional step
window, plain CFG ``E + w (P - E)`` outside it."""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class ThreeTermNegativePrompt(GuidanceMode):
    name = "np3"
    title = "3-term negative prompt"
    windowed = True
    settings = ("window",)

    def slots(self, negative_active: bool) -> Slots:
        if negative_active:
            return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))
        return Slots(POSITIVE, self.empty, needs_correction=False)

    def combine(self, plan, p, predictions):
        from ..guidance import cfg, negative_prompt_3term

        w = self.spec.cfg_scale
        if plan.negative_active:
            return negative_prompt_3term(p[EMPTY], p[POSITIVE], p[NEGATIVE], w)
        return cfg(p[EMPTY], p[POSITIVE], w)
