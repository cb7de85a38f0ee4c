"""Forge wiring (f2.x on the WebUI 1.10 base).

Forge still calls ``on_cfg_denoiser`` (with only the B image rows in ``params.x``), so the windowed
negative and DNS work as in A1111. It never calls ``on_cfg_denoised``, so DNG goes through its UNet patcher:
in ``process_before_every_sampling`` we install, on a clone of ``forge_objects.unet``, a post-CFG function
(a closure: Forge deep-copies ``model_options`` when it clones the patcher, which breaks bound methods)
that evaluates the negative prompt once more (``calc_cond_uncond_batch`` of the negative conditioning
compiled with ``compile_conditions``), steps the posteriors and adds ``-lambda (neg - pos)``. Forge's own
uncond rows carry the empty prompt (replaced in ``on_cfg_denoiser``). All of it in x0 space at sigma.

An exception in a Forge hook fails the request (HTTP 500), so the post-CFG function never raises: on any
error it reports once and returns Forge's own prediction.
"""

from __future__ import annotations

import traceback

import torch

from . import conds as C
from .engine import DNGRun, Job, dng_correction, empty_rows_like, is_ancestral, step_of_eval, swap_prompts_for_step

TAG = "_negguide_post_cfg"


def forge_api():
    """Forge's conditioning compiler and batch evaluator, wherever this Forge version keeps them."""
    try:  # Forge 2.x
        from backend.sampling.condition import Condition, compile_conditions
        from backend.sampling.sampling_function import calc_cond_uncond_batch
    except ImportError:  # Forge 0.x/1.x (ldm_patched)
        from ldm_patched.modules.samplers import calc_cond_uncond_batch
        from modules_forge.forge_sampler import compile_conditions

        try:
            from ldm_patched.modules.conds import CONDRegular as Condition
        except ImportError:
            Condition = None
    return {
        "compile_conditions": compile_conditions,
        "calc_cond_uncond_batch": calc_cond_uncond_batch,
        "Condition": Condition,
    }


class ForgeAdapter:
    def __init__(self, job: Job, p, callbacks, api=None):
        self.job, self.p, self.callbacks = job, p, callbacks
        self._api = api
        self.registered = False
        self.errors = 0

    @property
    def api(self):
        if self._api is None:
            self._api = forge_api()
        return self._api

    def register(self):
        if not self.registered:
            self.callbacks.on_cfg_denoiser(self.on_cfg_denoiser)
            self.registered = True

    def remove(self):
        self.callbacks.remove_callbacks_for_function(self.on_cfg_denoiser)
        self.registered = False

    def _is_hr(self) -> bool:
        return bool(getattr(self.p, "is_hr_pass", False))

    def _schedule_steps(self, is_hr):
        p = self.p
        if is_hr or getattr(p, "init_latent", None) is None:
            return None
        return int(getattr(p, "steps", 0) or 0) or None

    # --- on_cfg_denoiser ----------------------------------------------------------------------------------
    def on_cfg_denoiser(self, params):
        d = params.denoiser
        if d is None:
            return
        if getattr(d, "p", None) is not None and d.p is not self.p:
            self.remove()
            return
        job = self.job
        is_hr = self._is_hr()
        run = job.run_for(d, is_hr, self._schedule_steps(is_hr))
        run.pending = None
        if params.text_uncond is None:  # Forge drops uncond at CFG 1 before the callback
            if job.settings.mode_key in ("dng", "dns"):
                job.warn(f"{job.settings.mode_key.upper()} skipped on steps without a negative branch (CFG 1)")
            return
        step, first = step_of_eval(run.last_call, run.steps, run.total_steps)
        swap_prompts_for_step(job, run, params, step, is_hr)
        if job.settings.mode_key == "dng":
            b = C.rows(params.text_uncond)
            if run.dng is None:
                p = self.p
                name = (getattr(p, "hr_sampler_name", None) if is_hr else None) or getattr(p, "sampler_name", "")
                eta = float(getattr(p, "eta", None) or 1.0)
                run.dng = DNGRun(job.settings, b, is_ancestral(name), eta, params.x.device)
                run.record.tracker = run.dng.name
            run.pending = {
                "neg": params.text_uncond,
                "image_cond": params.image_cond,
                "step": step,
                "first_eval": first,
                "b": b,
            }
            params.text_uncond = empty_rows_like(job, is_hr, params.text_uncond, b, run)

    # --- the UNet patch -----------------------------------------------------------------------------------
    def install(self, p):
        """``process_before_every_sampling``: put the post-CFG function on a clone of the UNet patcher.
        Idempotent (Forge calls the hook twice in the hires pass)."""
        if self.job.settings.mode_key != "dng":
            return
        fo = p.sd_model.forge_objects
        unet = fo.unet.clone()
        lst = unet.model_options.get("sampler_post_cfg_function", [])
        unet.model_options["sampler_post_cfg_function"] = [f for f in lst if not getattr(f, TAG, False)]
        unet.set_model_sampler_post_cfg_function(self.make_post_cfg(unet))
        fo.unet = unet

    def make_post_cfg(self, unet):
        adapter = self

        def negguide_post_cfg(args):
            try:
                return adapter._post_cfg(args, unet)
            except Exception:
                adapter.errors += 1
                if adapter.errors == 1:
                    adapter.job.warn(
                        "DNG post-CFG function failed, Forge's own prediction is kept:\n" + traceback.format_exc()
                    )
                return args["denoised"]

        setattr(negguide_post_cfg, TAG, True)
        return negguide_post_cfg

    def _post_cfg(self, args, unet):
        denoised = args["denoised"]
        run = self.job.current
        pend = run.pending if run is not None else None
        if not pend:
            return denoised
        run.pending = None
        api = self.api
        x, sigma = args["input"], args["sigma"]
        pos = args["cond_denoised"]
        neg_c = api["compile_conditions"](pend["neg"])
        ic = pend["image_cond"]
        cond_cls = api.get("Condition")
        if cond_cls is not None and hasattr(ic, "shape") and ic.shape[0] == x.shape[0] and ic.shape[2:] == x.shape[2:]:
            for h in neg_c:
                h["model_conds"]["c_concat"] = cond_cls(ic)
        control = getattr(unet, "controlnet_linked_list", None)
        if control is not None:
            for h in neg_c:
                h["control"] = control
        calc = api["calc_cond_uncond_batch"]
        neg, _ = calc(args["model"], neg_c, None, x, sigma, args["model_options"])
        probes = None
        k = run.dng.probes if run.dng.wants_update(pend["step"], pend["first_eval"]) else 0
        if k:
            v, pts = run.dng.ctl.probe_points(x, sigma)
            ref_at, neg_at = [], []
            for i in range(k):  # both branches at one probe point in one batched call
                r, n = calc(args["model"], args["cond"], neg_c, pts[i], sigma, args["model_options"])
                ref_at.append(r)
                neg_at.append(n)
            probes = (v, torch.stack(ref_at), torch.stack(neg_at))
        lam = run.dng.lam_at(pend["step"], pend["first_eval"], x, sigma, pos, neg, probes)
        return dng_correction(denoised, pos, neg, lam.to(denoised.device))
