"""``perp_neg``: Perp-Neg (Armandpour et al. 2023), ``E + w (P - E - w_n perp(N - E, P - E))`` per image."""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class PerpNeg(GuidanceMode):
    name = "perp_neg"
    title = "Perp-Neg"
    needs_prompt = True
    settings = ("perp_neg_scale",)

    def slots(self, negative_active: bool) -> Slots:
        return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))

    def combine(self, plan, p, predictions):
        from ..guidance import perp_neg

        return perp_neg(p[EMPTY], p[POSITIVE], p[NEGATIVE], self.spec.cfg_scale, self.spec.perp_neg_scale)
