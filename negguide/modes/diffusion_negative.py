"""``dns``: the diffusion-negative sample ``E + s (E - P)`` (Desai & Vasconcelos, Eq. 19): what the model considers
least like the prompt. CFG with the prompts swapped realises it at ``s = w - 1``: the slots hold the swapped
prompts, and only another ``s`` needs a correction."""

from __future__ import annotations

from .base import EMPTY, POSITIVE, GuidanceMode, Slots


class DiffusionNegative(GuidanceMode):
    name = "dns"
    title = "DNS"
    needs_prompt = True
    reads_negative = False
    settings = ("dns_scale",)

    def slots(self, negative_active: bool) -> Slots:
        spec = self.spec
        return Slots(self.empty, POSITIVE,
                     needs_correction=abs(spec.resolved_dns_scale - (spec.cfg_scale - 1.0)) > 1e-12)

    def combine(self, plan, p, predictions):
        from ..guidance import diffusion_negative

        return diffusion_negative(p[EMPTY], p[POSITIVE], self.spec.resolved_dns_scale)
