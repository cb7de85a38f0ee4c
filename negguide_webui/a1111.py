"""AUTOMATIC1111 (1.8-1.10) wiring through the CFG callbacks of ``modules/script_callbacks.py``.

* windowed negative: outside the window the uncond rows get the empty prompt (``text_uncond``), per image,
  same row count;
* DNS: ``text_cond`` <- empty prompt, ``text_uncond`` <- the positive prompt (2-term CFG with the prompts
  swapped is Desai Eq. 19 with s = CFG scale - 1);
* DNG: the B negative-prompt rows are appended to the *cond* part of the batch in ``on_cfg_denoiser`` (the
  WebUI reads cond rows by index and the uncond rows from the end, so rows added between them are carried
  through the one batched UNet call untouched), the uncond rows get the empty prompt; ``on_cfg_denoised``
  reads the positive, negative and empty predictions, steps the posteriors; ``on_cfg_after_cfg`` adds
  ``-lambda (neg - pos)`` per image.

The callbacks are registered per job (``process``) and removed in ``postprocess``; a callback that finds a
denoiser of another job removes itself, so nothing leaks if a job dies before ``postprocess``.
"""

from __future__ import annotations

import torch

from . import conds as C
from .engine import (
    DNGRun,
    Job,
    dng_correction,
    empty_rows_like,
    is_ancestral,
    match_tokens,
    sigma_frame,
    step_of_eval,
    swap_prompts_for_step,
    to_backend_state,
    to_denoised,
)


def _first_cond_rows(denoiser, batch: int, n_cond: int) -> list[int] | None:
    """Index of each image's first cond row (AND prompts give several rows per image)."""
    if n_cond == batch:
        return list(range(batch))
    try:
        c = denoiser.sampler.sampler_extra_args["cond"]
        repeats = [len(b) for b in c.batch]
    except Exception:
        return None
    if len(repeats) != batch or sum(repeats) != n_cond:
        return None
    out, pos = [], 0
    for r in repeats:
        out.append(pos)
        pos += r
    return out


class A1111Adapter:
    def __init__(self, job: Job, p, callbacks):
        self.job, self.p, self.callbacks = job, p, callbacks
        self.registered = False

    # --- registration -------------------------------------------------------------------------------------
    def register(self):
        if self.registered:
            return
        self.callbacks.on_cfg_denoiser(self.on_cfg_denoiser)
        if self.job.settings.mode_key == "dng":
            self.callbacks.on_cfg_denoised(self.on_cfg_denoised)
            self.callbacks.on_cfg_after_cfg(self.on_cfg_after_cfg)
        self.registered = True

    def remove(self):
        for fn in (self.on_cfg_denoiser, self.on_cfg_denoised, self.on_cfg_after_cfg):
            self.callbacks.remove_callbacks_for_function(fn)
        self.registered = False

    def _foreign(self, denoiser) -> bool:
        owner = getattr(denoiser, "p", None)
        if owner is not None and owner is not self.p:
            self.remove()
            return True
        return False

    # --- helpers ------------------------------------------------------------------------------------------
    def _is_hr(self) -> bool:
        return bool(getattr(self.p, "is_hr_pass", False))

    def _schedule_steps(self, is_hr: bool):
        p = self.p
        if is_hr or getattr(p, "init_latent", None) is None:
            return None
        return int(getattr(p, "steps", 0) or 0) or None

    def _sampler_name(self, is_hr: bool) -> str:
        p = self.p
        return (getattr(p, "hr_sampler_name", None) if is_hr else None) or getattr(p, "sampler_name", "") or ""

    @staticmethod
    def param_kind(denoiser) -> str:
        return "timestep" if hasattr(denoiser, "alphas") or "Timesteps" in type(denoiser).__name__ else "sigma"

    # --- callbacks ----------------------------------------------------------------------------------------
    def on_cfg_denoiser(self, params):
        d = params.denoiser
        if d is None or self._foreign(d):
            return
        job = self.job
        is_hr = self._is_hr()
        run = job.run_for(d, is_hr, self._schedule_steps(is_hr))
        step, first = step_of_eval(run.last_call, run.steps, run.total_steps)
        swap_prompts_for_step(job, run, params, step, is_hr)
        if job.settings.mode_key == "dng":
            self._inject(params, run, step, first, is_hr)

    def _inject(self, params, run, step: int, first: bool, is_hr: bool):
        """Append the negative-prompt rows (and, for the Hutchinson tracker, the probe rows of both branches)
        to the cond part of the batch; the uncond rows get the empty prompt. Row layout of the one UNet call:
        ``[cond rows (nc)] [neg (B)] [pos at probes (K*B)] [neg at probes (K*B)] [empty (B)]``."""
        job = self.job
        run.pending = None
        tc, tu = params.text_cond, params.text_uncond
        b, nc = C.rows(tu), C.rows(tc)
        x_in = params.x
        if x_in.shape[0] != nc + b:
            job.warn(
                f"DNG skipped: the batch has {x_in.shape[0]} rows, expected {nc} cond + {b} uncond "
                "(another extension changed it)"
            )
            return
        first_rows = _first_cond_rows(params.denoiser, b, nc)
        if first_rows is None:
            job.warn("DNG skipped: cannot tell which cond row belongs to which image")
            return
        kind = self.param_kind(params.denoiser)
        alphas = getattr(params.denoiser, "alphas", None)
        if kind == "timestep" and alphas is None:
            alphas = getattr(self.p.sd_model, "alphas_cumprod", None)
        x_img, s_img, ic_img = x_in[nc:], params.sigma[nc:], params.image_cond[nc:]
        if run.dng is None:
            p = self.p
            eta = float(getattr(p, "eta", None) or 1.0)
            run.dng = DNGRun(job.settings, b, is_ancestral(self._sampler_name(is_hr)), eta, x_img.device)
            run.record.tracker = run.dng.name
        empty_u = empty_rows_like(job, is_hr, tu, b, run)  # first: it may refuse (model switched mid-run)
        tc2, neg2 = match_tokens(tc, tu, job.empty(is_hr), run)
        x_ve, s_ve, ab = sigma_frame(kind, x_img, s_img, alphas)
        k = run.dng.probes if run.dng.wants_update(step, first) else 0
        xs, sig, ics, cs = (
            [x_in[:nc], x_img],
            [params.sigma[:nc], s_img],
            [params.image_cond[:nc], ic_img],
            [tc2, neg2],
        )
        v = pts = None
        if k:
            v, pts_ve = run.dng.ctl.probe_points(x_ve, s_ve)  # [K, B, ...] in the VE frame
            pts = to_backend_state(pts_ve.reshape(k * b, *x_img.shape[1:]), None if ab is None else ab.repeat(k))
            pos_rows = C.select(tc2, first_rows)
            xs += [pts, pts]
            sig += [s_img.repeat(k), s_img.repeat(k)]
            ics += [ic_img.repeat(k, *([1] * (ic_img.ndim - 1)))] * 2
            cs += [C.cat([pos_rows] * k), C.cat([neg2] * k)]
        params.text_cond = C.cat(cs)
        params.x = torch.cat(xs + [x_in[nc:]])
        params.sigma = torch.cat(sig + [params.sigma[nc:]])
        params.image_cond = torch.cat(ics + [params.image_cond[nc:]])
        params.text_uncond = empty_u
        run.pending = {
            "nc": nc,
            "b": b,
            "k": k,
            "first": first_rows,
            "x": x_img,
            "x_ve": x_ve,
            "s_ve": s_ve,
            "ab": ab,
            "v": v,
            "pts": pts,
            "step": step,
            "first_eval": first,
            "nmask": getattr(params.denoiser, "nmask", None),
        }

    def on_cfg_denoised(self, params):
        run = self.job.current
        pend = run.pending if run is not None else None
        if not pend or "lam" in pend:
            return
        x_out = params.x
        nc, b, k = pend["nc"], pend["b"], pend["k"]
        if x_out.shape[0] != nc + 2 * b + 2 * k * b:
            self.job.warn(f"DNG skipped: the UNet output has {x_out.shape[0]} rows, expected {nc + 2 * b + 2 * k * b}")
            run.pending = None
            return
        pos = x_out[pend["first"]].clone()
        neg = x_out[nc : nc + b].clone()
        ab = pend["ab"]
        probes = None
        if k:
            o = nc + b
            abk = None if ab is None else ab.repeat(k)
            ref_at = to_denoised(x_out[o : o + k * b], pend["pts"], abk).reshape(k, *pos.shape)
            neg_at = to_denoised(x_out[o + k * b : o + 2 * k * b], pend["pts"], abk).reshape(k, *pos.shape)
            probes = (pend["v"], ref_at, neg_at)
        x = pend["x"]
        lam = run.dng.lam_at(
            pend["step"],
            pend["first_eval"],
            pend["x_ve"],
            pend["s_ve"],
            to_denoised(pos, x, ab),
            to_denoised(neg, x, ab),
            probes,
        )
        pend.update(pos=pos, neg=neg, lam=lam)

    def on_cfg_after_cfg(self, params):
        run = self.job.current
        pend = run.pending if run is not None else None
        if not pend or "lam" not in pend:
            return
        run.pending = None
        out = params.x
        if out.shape[0] != pend["b"]:
            self.job.warn(f"DNG skipped: combined prediction has {out.shape[0]} rows, expected {pend['b']}")
            return
        params.x = dng_correction(
            out, pend["pos"].to(out), pend["neg"].to(out), pend["lam"].to(out.device), pend["nmask"]
        )
