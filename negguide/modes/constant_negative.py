"""``np_lambda``: negative guidance at a constant scale, ``E + w (P - E) - lambda (N - P)``: the DNG paper's NP for
text-to-image (its Eq. 6 with the positively prompted model in the unguided model's place, Sec. 4.2), i.e. DNG's
rule with lambda held fixed. The baseline that isolates what DNG's posterior adds; ``negative_scale`` is lambda."""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class ConstantNegative(GuidanceMode):
    name = "np_lambda"
    title = "constant negative guidance"
    settings = ("negative_scale",)

    def slots(self, negative_active: bool) -> Slots:
        return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))

    def combine(self, plan, p, predictions):
        from ..guidance import dng_text

        return dng_text(p[EMPTY], p[POSITIVE], p[NEGATIVE], self.spec.cfg_scale, self.spec.negative_scale)

    def correction(self, plan, p, predictions):
        """``-lambda (N - P)``, whatever the backend's uncond rows and CFG scale (as DNG's)."""
        from ..guidance import dng_term

        return dng_term(p[POSITIVE], p[NEGATIVE], self.spec.negative_scale)
