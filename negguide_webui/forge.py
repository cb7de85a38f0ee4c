"""Forge wiring: the Forge line on the WebUI 1.10 base (Forge 2.x and the forks reForge, Forge Classic, Forge
Neo). What differs between them (where the compiler and the batch evaluator live) is in :mod:`.forge_api`.

What Forge forces: ``on_cfg_denoiser`` sees only the B image rows and ``on_cfg_denoised`` is never called, so
the slots are set in ``on_cfg_denoiser`` as in A1111, and the plan's extra rows (DNG's negative branch,
Hutchinson probes) are evaluated in a post-CFG function on the UNet patcher, with Forge's own conditioning
compiler and batch evaluator; the core's correction is added to Forge's combined prediction there. All of it
in x0 space at sigma.

The post-CFG function is a closure installed on a clone of ``forge_objects.unet`` in
``process_before_every_sampling`` (Forge deep-copies ``model_options`` when it clones the patcher, which breaks
bound methods). An exception in a Forge hook fails the request (HTTP 500), so it never raises: on any error it
reports once and returns Forge's own prediction.
"""

from __future__ import annotations

import traceback

from negguide import Frame, Rows, evaluate_extra_rows

from . import conds as C
from .adapter import CFGAdapter
from .cfg_one import cfg_one_warning, lost_at_cfg_one
from .forge_api import ForgeAPI, find_forge_api
from .job import Job, PendingEvaluation
from .pass_info import cfg_scale
from .slots import Conditionings

TAG = "_negguide_post_cfg"


class ForgeAdapter(CFGAdapter):
    def __init__(self, job: Job, p, backend):
        super().__init__(job, p, backend)
        self._api = backend.forge_api
        self.errors = 0

    @property
    def api(self) -> ForgeAPI:
        if self._api is None:
            self._api = find_forge_api()
        return self._api

    # --- the adapter protocol ----------------------------------------------------------------------------
    def register(self):
        if not self.registered:
            self.callbacks.on_cfg_denoiser(self.on_cfg_denoiser)
            self.registered = True

    def remove(self):
        self.callbacks.remove_callbacks_for_function(self.on_cfg_denoiser)
        self.registered = False

    def before_sampling(self, p):
        """``process_before_every_sampling``: put the post-CFG function on a clone of the UNet patcher.
        Idempotent (Forge calls the hook twice in the hires pass)."""
        is_hr = bool(getattr(p, "is_hr_pass", False))
        spec = self.job.settings.spec(cfg_scale(p, is_hr), is_hr)
        mode = spec.guidance_mode()
        if spec.cfg_scale == 1.0 and lost_at_cfg_one(spec) and not mode.adds_to_cfg():
            # a mode that only chooses the slots needs the uncond rows every program of the line skips at CFG 1
            self.job.warn(cfg_one_warning(spec, is_hr))
        if not mode.adds_to_cfg():  # the mode only chooses the slots: Forge's own CFG does the rest
            return
        fo = p.sd_model.forge_objects
        unet = fo.unet.clone()
        lst = unet.model_options.get("sampler_post_cfg_function", [])
        unet.model_options["sampler_post_cfg_function"] = [f for f in lst if not getattr(f, TAG, False)]
        unet.set_model_sampler_post_cfg_function(self.make_post_cfg())
        fo.unet = unet

    # --- on_cfg_denoiser ----------------------------------------------------------------------------------
    def frame(self, denoiser) -> Frame:
        return Frame.k_diffusion()  # every Forge sampler hands x0 at sigma

    def on_cfg_denoiser(self, params):
        d = params.denoiser
        if d is None or self.foreign(d):
            return
        job = self.job
        is_hr = bool(getattr(self.p, "is_hr_pass", False))
        if params.text_uncond is None:  # Forge and Neo drop uncond at CFG 1 before the callback
            spec = job.settings.spec(cfg_scale(self.p, is_hr), is_hr)
            if lost_at_cfg_one(spec):
                job.warn(cfg_one_warning(spec, is_hr))
            return
        tc, tu = params.text_cond, params.text_uncond
        sp = job.pass_for(d, is_hr, lambda: self.new_run(d, C.rows(tu), is_hr))
        sp.pending = None
        plan = sp.run.plan(params.x, params.sigma, evaluation=sp.last_call)
        conds = Conditionings(job, sp, tc, tu, is_hr)
        try:
            params.text_uncond = conds.uncond_slot(plan.uncond_branch)
            params.text_cond = conds.cond_part(plan.cond_branch, [])[0]
        except (ValueError, TypeError) as e:
            job.warn(f"negguide skipped a step: {e}")
            return
        if plan.needs_correction:
            sp.pending = PendingEvaluation(plan, negative=tu)

    # --- the UNet patch -----------------------------------------------------------------------------------
    def make_post_cfg(self):
        adapter = self

        def negguide_post_cfg(args):
            try:
                return adapter._post_cfg(args)
            except Exception:
                adapter.errors += 1
                if adapter.errors == 1:
                    adapter.job.warn("the post-CFG function failed, Forge's own prediction is kept:\n"
                                     + traceback.format_exc())
                return args["denoised"]

        setattr(negguide_post_cfg, TAG, True)
        return negguide_post_cfg

    def _compiled_negative(self, pend: PendingEvaluation, own_cond: list) -> list:
        """The negative prompt compiled by the program's own compiler, with what the program attached to its own
        cond: the concat conditioning (inpainting, edit models; each fork decides when) and the ControlNet."""
        negative = self.api.compile(pend.negative)
        ref = own_cond[0] if own_cond else {}
        for h in negative:
            for key, value in ref.get("model_conds", {}).items():
                h["model_conds"].setdefault(key, value)
            if "control" in ref:
                h["control"] = ref["control"]
        return negative

    def _post_cfg(self, args):
        denoised = args["denoised"]
        sp = self.job.current
        pend = sp.pending if sp is not None else None
        if pend is None:
            return denoised
        sp.pending = None
        plan, sigma = pend.plan, args["sigma"]
        compiled = {"positive": args["cond"], "negative": self._compiled_negative(pend, args["cond"])}
        predictions = {Rows(plan.cond_branch): args["cond_denoised"], Rows(plan.uncond_branch): args["uncond_denoised"]}

        def evaluate(branches, images, x, sigma_rows):  # Forge's compiled conds hold every image's row
            return self.api.evaluate(args["model"], [compiled[b] for b in branches], x, sigma_rows,
                                     args["model_options"])

        predictions.update(evaluate_extra_rows(plan, plan.extra, evaluate, sigma, whole_batch=True))
        return denoised + sp.run.correction(plan, predictions).to(denoised)
