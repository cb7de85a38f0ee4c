"""``sld``: Safe Latent Diffusion (Schramowski et al. 2023), the DNG paper's baseline: ``E + w (P - E - gamma)``
in eps units, with a per-pixel momentum (:class:`negguide.sld.SafeLatentDiffusion`) that this mode keeps per
pass."""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class SafeLatent(GuidanceMode):
    name = "sld"
    title = "SLD"
    settings = ("sld",)

    def slots(self, negative_active: bool) -> Slots:
        return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))

    def refusals(self, frame, sampler):
        return [(not frame.flow, "SLD's threshold is defined in eps units of a VP/VE model; it has no meaning for a "
                                 "rectified-flow model")]

    def begin(self, context) -> None:
        from ..sld import SafeLatentDiffusion

        super().begin(context)
        self.sld = SafeLatentDiffusion(self.spec.sld)

    def combine(self, plan, p, predictions):
        """SLD's threshold lives in eps units: convert, guide, convert back (in float32 at least: eps at a small
        noise level overflows half precision)."""
        from ..guidance import _compute_dtype, _finish

        frame, noise, like = self.context.frame, plan.level, p[POSITIVE]
        x = plan.x.to(_compute_dtype(like))
        eps = {b: frame.eps(t.to(x.dtype), x, noise) for b, t in p.items()}
        guided = self.sld(eps[EMPTY], eps[POSITIVE], eps[NEGATIVE], self.spec.cfg_scale, step=plan.step)
        return _finish(frame.from_eps(guided, x, noise), like)
