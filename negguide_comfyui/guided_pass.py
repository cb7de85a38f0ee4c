"""One sampling pass of a negguide-patched model: the core's GuidanceRun and the conditionings of its branches.

A pass is created when ComfyUI's sampler starts (``patch.py``'s sampler wrapper) and lives only in that call's
``model_options``: nothing outlives the pass, whether the sampler returns or is interrupted. Per model
evaluation ComfyUI's ``sampling_function`` calls

``calc_cond_batch(args)``
    (our ``sampler_calc_cond_batch_function``): the run's plan says which branches to evaluate; every row at the
    sampler's state goes through ONE ``comfy.samplers.calc_cond_batch`` call (DNG's Hutchinson probe rows, at
    other states, through a second one at a step's first evaluation). It returns the two CFG slots (the plan's
    cond / uncond branches), so ComfyUI's own CFG, pre-CFG functions and samplers (CFG++) see what they expect;
``post_cfg(args)``
    (first of the ``sampler_post_cfg_function`` list): adds the run's correction, what the mode adds to CFG.

Modes that only choose the slots (windows, DNS at s = cfg - 1, DNG at lambda0 = 0) therefore run ComfyUI's
CFG arithmetic unchanged, bit for bit.
"""

from __future__ import annotations

import torch

from negguide import (
    GuidanceRun,
    GuidanceSpec,
    Rows,
    ScheduleClock,
    SettingsError,
    evaluate_extra_rows,
    probe_generators,
)

from .model_kind import ModelKind, refuse_unsupported
from .per_image import image_seeds, select_images
from .sampler_kind import sampler_info, sampler_name
from .trace import PassSummary, current_node_id


def schedule_clock(sigmas: torch.Tensor) -> ScheduleClock:
    """Steps start at every sigma but the last (the pass's end state; 0 when it denoises fully)."""
    try:
        return ScheduleClock.of(sigmas[:-1])
    except ValueError as e:
        raise SettingsError([f"negguide needs a decreasing noise schedule ({e}); got sigmas "
                             f"{[round(float(s), 4) for s in sigmas.reshape(-1)[:8]]}..."]) from e


class GuidedPass:
    def __init__(self, run: GuidanceRun, conds: dict[str, list], title: str, sampler: str, evaluate):
        self.run, self.conds, self.title, self.sampler = run, conds, title, sampler
        self._evaluate = evaluate  # (model, conds, x, sigma, model_options) -> [outputs]
        self._pending = None  # (plan, predictions) of the evaluation between calc_cond_batch and post_cfg
        self.evaluations = 0
        self.rows = 0

    # --- per evaluation --------------------------------------------------------------------------------------
    def calc_cond_batch(self, args: dict) -> list[torch.Tensor]:
        x, sigma, model, options = args["input"], args["sigma"], args["model"], args["model_options"]
        plan = self.run.plan(x, sigma)
        at_state = [g for g in plan.groups if g.probe is None]
        outputs = self._evaluate(model, [self.conds[g.branch] for g in at_state], x, sigma, options)
        predictions = dict(zip(at_state, outputs, strict=True))
        probes = [g for g in plan.groups if g.probe is not None]
        if probes:  # other states: one call per set of probing images (ComfyUI repeats a conditioning to its rows)
            batch = plan.x.shape[0]

            def evaluate(branches, images, x_rows, sigma_rows):
                conds = [select_images(self.conds[b], images, batch) for b in branches]
                return self._evaluate(model, conds, x_rows, sigma_rows, options)

            sigmas = torch.as_tensor(sigma, device=plan.x.device).reshape(-1).expand(batch)
            predictions.update(evaluate_extra_rows(plan, probes, evaluate, sigmas))
        self.evaluations += 1
        self.rows += sum(plan.row_count(g) for g in plan.groups)  # a gated step probes only some images
        self._pending = (plan, predictions)
        return [predictions[Rows(plan.cond_branch)], predictions[Rows(plan.uncond_branch)]]

    def post_cfg(self, args: dict) -> torch.Tensor:
        pending, self._pending = self._pending, None
        if pending is None or not pending[0].needs_correction:
            return args["denoised"]
        plan, predictions = pending
        return args["denoised"] + self.run.correction(plan, predictions)

    # --- end of the pass ---------------------------------------------------------------------------------------
    def summary(self, samples: torch.Tensor, sigmas: torch.Tensor) -> PassSummary:
        """Accounts for the last step (DNG) and summarises the pass. ComfyUI's sampler returns the k-diffusion
        state ``x / a`` at the last sigma (``inverse_noise_scaling``); the frame turns it back into its own."""
        frame, batch = self.run.frame, samples.shape[0]
        last = float(sigmas[-1])
        final = self.run.finish(frame.from_ve(samples, frame.noise_level(last, batch)), last)
        return PassSummary(self.title, self.sampler, self.run.tracker_name(), batch, self.run.clock.steps,
                           self.evaluations, self.rows, self.run.records,
                           None if final is None else [float(p) for p in final], current_node_id())


def start_pass(spec: GuidanceSpec, kind: ModelKind, sampler, sigmas: torch.Tensor, noise: torch.Tensor, seed,
               conds: dict[str, list], title: str, evaluate) -> GuidedPass:
    info = sampler_info(sampler, sigmas[:-1].tolist())
    refuse_unsupported(spec, kind, info)
    run = GuidanceRun(spec, noise.shape[0], kind.frame, info, clock=schedule_clock(sigmas),
                      generator=probe_generators(image_seeds(seed, noise)))
    return GuidedPass(run, conds, title, sampler_name(sampler), evaluate)
