"""``dng``: Dynamic Negative Guidance (Koulischer et al. 2025, Sec. 4.2 / Eq. 10), ``E + w (P - E) - lambda (N - P)``
with ``lambda = lambda0 p / (1 - p)`` per image, ``p`` the tracked posterior of the negative concept
(:class:`negguide.dng.DynamicNegativeGuidance`, built at the pass's first evaluation on the state's device).

The posterior moves at the first evaluation of a step (where the state is informative), with the Hutchinson
probe rows this mode adds to that evaluation's plan; later evaluations of the step reuse its lambda.
"""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class DynamicNegative(GuidanceMode):
    name = "dng"
    title = "DNG"
    settings = ("dng",)

    def __init__(self, spec):
        super().__init__(spec)
        self.controller = None  # DynamicNegativeGuidance, from the first evaluation on
        self._tracker_name: str | None = None

    @property
    def active(self) -> bool:
        return self.spec.dng.active

    def slots(self, negative_active: bool) -> Slots:
        if self.active:
            return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))
        return Slots(POSITIVE, self.empty, needs_correction=False)

    def probes(self, sampler) -> bool:
        return self.active and self.spec.dng.probing(sampler)

    def refusals(self, frame, sampler):
        stochastic_transition = (sampler is not None and sampler.injects_noise and self.active
                                 and self.spec.dng.resolved_tracker(sampler) == "transition")
        return [(not (stochastic_transition and frame.flow),
                 "DNG's transition tracker models the ancestral step of a VP/VE model; a stochastic rectified-flow "
                 "sampler re-noises differently: choose the flow-moment or flow-hutchinson tracker, or a "
                 "deterministic sampler")]

    # --- the pass ---------------------------------------------------------------------------------------------
    def begin(self, context) -> None:
        super().begin(context)
        if self.active:
            ready = context.tracker
            self._tracker_name = ready.name if ready is not None else self.spec.dng.resolved_tracker(context.sampler)

    def tracker_name(self) -> str | None:
        return self._tracker_name

    def extend(self, plan) -> None:
        if not self.active:
            return
        import torch

        from ..dng import DynamicNegativeGuidance

        context, frame, noise = self.context, self.context.frame, plan.level
        if self.controller is None:
            self.controller = DynamicNegativeGuidance(self.spec.dng, context.batch_size, context.sampler,
                                                      plan.x.device, context.generator, context.record,
                                                      context.tracker)
        if not (plan.first and noise.informative() and self.controller.probe_pairs):
            return
        request = self.controller.probe_points(frame.to_ve(plan.x, noise), noise.sigma, plan.step)
        if request is None:
            return
        sub = noise if request.images is None else noise.select(request.images)
        images = None if request.images is None else tuple(request.images.tolist())
        plan.probe_directions = request.directions
        plan.probe_inputs = torch.stack([frame.from_ve(point, sub) for point in request.points])
        plan.extra += tuple(Rows(b, k, images) for k in range(request.points.shape[0]) for b in (POSITIVE, NEGATIVE))

    def combine(self, plan, p, predictions):
        from ..guidance import cfg, dng_text

        w = self.spec.cfg_scale
        if not self.active:
            return cfg(p[EMPTY], p[POSITIVE], w)
        return dng_text(p[EMPTY], p[POSITIVE], p[NEGATIVE], w, self._lambda(plan, p, predictions))

    def correction(self, plan, p, predictions):
        """``-lambda (N - P)``: depends on neither the empty branch nor the backend's CFG scale, so it stays right
        where the backend skips its uncond rows (NGMS, CFG 1)."""
        if not self.active:
            return super().correction(plan, p, predictions)
        from ..guidance import dng_term

        return dng_term(p[POSITIVE], p[NEGATIVE], self._lambda(plan, p, predictions))

    def _lambda(self, plan, p, predictions):
        """lambda per image; the posterior moves at the first evaluation of a step (where informative)."""
        if not (plan.first and plan.level.informative()):
            return self.controller.current_lambda()
        import torch

        frame, x, noise = self.context.frame, plan.x, plan.level
        probe_predictions = None
        if plan.probe_directions is not None:
            probes = [r for r in plan.extra if r.probe is not None]
            images = probes[0].images
            sub = noise if images is None else noise.select(torch.tensor(images))
            at = {b: torch.stack([frame.denoised(predictions[r], plan.probe_inputs[r.probe], sub)
                                  for r in probes if r.branch == b]) for b in (POSITIVE, NEGATIVE)}
            probe_predictions = (plan.probe_directions, at[POSITIVE], at[NEGATIVE])
        return self.controller.observe(plan.step, frame.to_ve(x, noise), noise.sigma,
                                       frame.denoised(p[POSITIVE], x, noise), frame.denoised(p[NEGATIVE], x, noise),
                                       probe_predictions)

    def finish(self, x, level):
        if self.controller is None:
            return None
        if level is None:
            return self.controller.finish(x, 0.0)
        noise = self.context.frame.noise_level(level, x.shape[0])
        return self.controller.finish(self.context.frame.to_ve(x, noise), noise.sigma)

    def step_records(self) -> dict[int, dict]:
        if self.controller is None:
            return {}
        return {r["step"]: {"p": r["p"], "probe_rows": r["probe_rows"], "lambda": r["lambda"]}
                for r in self.controller.records}

    def average_extra_rows(self) -> float:
        return 0.0 if self.controller is None else self.controller.average_extra_rows()
