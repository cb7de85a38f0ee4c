"""AUTOMATIC1111 (1.8-1.10) wiring through the CFG callbacks of ``modules/script_callbacks.py``.

What A1111 forces: the only place to act is its CFG denoiser's callbacks, which see one batched UNet call.
``on_cfg_denoiser`` puts the plan's branches into the cond / uncond slots (row counts unchanged) and appends
the plan's extra rows (DNG's negative branch, Hutchinson probe rows) to the *cond* part of the batch: the
WebUI reads cond rows by index and the uncond rows from the end, so rows added between them travel through
the one UNet call untouched. ``on_cfg_denoised`` hands the predictions to the core, ``on_cfg_after_cfg``
adds the core's correction to the WebUI's own CFG result. Row layout of the call:
``[cond rows (nc)] [extra group 1] ... [extra group G] [uncond rows (B)]``, an extra group holding one row per
image, or per image of ``rows.images`` on a step where only some images probe.

The callbacks are registered per job (``process``) and removed in ``postprocess``; a callback that finds a
denoiser of another job removes itself, so nothing leaks if a job dies before ``postprocess``.
"""

from __future__ import annotations

import torch

from negguide import Frame, Rows

from . import conds as C
from .adapter import CFGAdapter
from .job import PendingEvaluation
from .slots import Conditionings


def _first_cond_rows(denoiser, batch: int, n_cond: int) -> list[int] | None:
    """Index of each image's first cond row (AND prompts give several rows per image)."""
    if n_cond == batch:
        return list(range(batch))
    try:
        repeats = [len(b) for b in denoiser.sampler.sampler_extra_args["cond"].batch]
    except (AttributeError, KeyError, TypeError):
        return None
    if len(repeats) != batch or sum(repeats) != n_cond:
        return None
    return [sum(repeats[:i]) for i in range(batch)]


class A1111Adapter(CFGAdapter):
    # --- the adapter protocol ----------------------------------------------------------------------------
    def register(self):
        if not self.registered:
            self.callbacks.on_cfg_denoiser(self.on_cfg_denoiser)
            self.callbacks.on_cfg_denoised(self.on_cfg_denoised)
            self.callbacks.on_cfg_after_cfg(self.on_cfg_after_cfg)
            self.registered = True

    def remove(self):
        for fn in (self.on_cfg_denoiser, self.on_cfg_denoised, self.on_cfg_after_cfg):
            self.callbacks.remove_callbacks_for_function(fn)
        self.registered = False

    def before_sampling(self, p):
        """Nothing to install: A1111's callbacks are registered for the whole job."""

    def frame(self, denoiser) -> Frame:
        """k-diffusion denoisers hand x0 at sigma; the timestep ones (DDIM/PLMS/UniPC) eps at a timestep."""
        if not (hasattr(denoiser, "alphas") or "Timesteps" in type(denoiser).__name__):
            return Frame.k_diffusion()
        alphas = getattr(denoiser, "alphas", None)
        return Frame.discrete_vp(alphas if alphas is not None else self.p.sd_model.alphas_cumprod)

    # --- callbacks ----------------------------------------------------------------------------------------
    def on_cfg_denoiser(self, params):
        d = params.denoiser
        if d is None or self.foreign(d):
            return
        job = self.job
        is_hr = bool(getattr(self.p, "is_hr_pass", False))
        tc, tu = params.text_cond, params.text_uncond
        b, nc = C.rows(tu), C.rows(tc)
        sp = job.pass_for(d, is_hr, lambda: self.new_run(d, b, is_hr))
        sp.pending = None
        if params.x.shape[0] != nc + b:
            job.warn(f"negguide skipped a step: the batch has {params.x.shape[0]} rows, expected {nc} cond + {b} "
                     "uncond (another extension changed it)")
            return
        plan = sp.run.plan(params.x[nc:], params.sigma[nc:], evaluation=sp.last_call)
        first_rows = _first_cond_rows(d, b, nc)
        if first_rows is None and (plan.extra or plan.needs_correction):
            job.warn("negguide skipped a step: cannot tell which cond row belongs to which image")
            return
        conds = Conditionings(job, sp, tc, tu, is_hr)
        try:
            uncond = conds.uncond_slot(plan.uncond_branch)
            cond_part = conds.cond_part(plan.cond_branch, list(plan.extra), first_rows)
        except (ValueError, TypeError) as e:
            job.warn(f"negguide skipped a step: {e}")
            return
        params.text_uncond = uncond
        params.text_cond = cond_part[0] if len(cond_part) == 1 else C.cat(cond_part)
        if plan.extra:
            self._append_extra_rows(params, plan, nc)
        sp.pending = PendingEvaluation(plan, first_rows, nc, mask=getattr(d, "nmask", None))

    @staticmethod
    def _append_extra_rows(params, plan, nc: int):
        x, sigma, ic = params.x, params.sigma, params.image_cond
        img = slice(nc, None)
        xs, sigmas, ics = [x[:nc]], [sigma[:nc]], [ic[:nc]]
        for rows in plan.extra:  # one row per image, or per image of rows.images (only some images probe)
            pick = img if rows.images is None else [nc + i for i in rows.images]
            xs.append(plan.inputs(rows))
            sigmas.append(sigma[pick])
            ics.append(ic[pick])
        params.x = torch.cat(xs + [x[img]])
        params.sigma = torch.cat(sigmas + [sigma[img]])
        params.image_cond = torch.cat(ics + [ic[img]])

    def on_cfg_denoised(self, params):
        sp = self.job.current
        pend = sp.pending if sp is not None else None
        if pend is None or not pend.plan.needs_correction:
            return
        plan, nc, b = pend.plan, pend.cond_rows, pend.plan.x.shape[0]
        x_out = params.x
        sizes = [plan.row_count(rows) for rows in plan.extra]
        expected = nc + sum(sizes) + b
        if x_out.shape[0] != expected:
            self.job.warn(f"negguide skipped a step: the UNet output has {x_out.shape[0]} rows, expected {expected}")
            sp.pending = None
            return
        predictions = {Rows(plan.cond_branch): x_out[pend.first_cond_rows], Rows(plan.uncond_branch): x_out[-b:]}
        extra_out = x_out[nc:nc + sum(sizes)].split(sizes) if sizes else []
        predictions.update(zip(plan.extra, extra_out, strict=True))
        pend.correction = sp.run.correction(plan, predictions)

    def on_cfg_after_cfg(self, params):
        sp = self.job.current
        pend = sp.pending if sp is not None else None
        if pend is None or pend.correction is None:
            return
        sp.pending = None
        out = params.x
        if out.shape[0] != pend.correction.shape[0]:
            self.job.warn(f"negguide skipped a step: the combined prediction has {out.shape[0]} rows")
            return
        term = pend.correction.to(out)
        if pend.mask is not None:
            term = term * pend.mask
        params.x = out + term

