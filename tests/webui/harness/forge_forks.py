"""The forks of Forge in the Forge harness: what reForge, Forge Classic and Forge Neo do after ``on_cfg_denoiser``
and where they keep their functions (:class:`harness.forge.Program`).

Written for negguide (not copied); it mirrors, of each fork's snapshot:

* **reForge**, Panchovix/stable-diffusion-webui-reForge ``3b56b268`` (main, 2026-03-11):
  ``modules/sd_samplers_cfg_denoiser.py`` (``CFGDenoiser.forward``), ``modules_forge/forge_sampler.py``
  (``cond_from_a1111_to_patched_ldm``), ``ldm_patched/modules/samplers.py`` (``calc_cond_batch``,
  ``calc_cond_uncond_batch``, ``sampling_function``, ``cfg_function``):
  the conditionings go as a list to ComfyUI's ``calc_cond_batch`` (which ``model_options
  ["sampler_calc_cond_batch_function"]`` replaces), each conditioning the strength-weighted mean of its entries;
  post-CFG functions get ``cond_scale``, and at CFG 1 ``uncond`` None and ``uncond_denoised`` zeros; the hires pass
  runs at ``p.hr_cfg``; NGMS reads the *option* ``s_min_uncond`` (not the request's) and acts on even
  evaluations; ``on_cfg_denoiser`` always gets the uncond.
* **Forge Classic**, Haoming02/sd-webui-forge-classic ``1f95d717`` (branch classic), the same files: only
  ``calc_cond_uncond_batch`` (two conditionings per call); post-CFG functions get no ``cond_scale``; the hires pass
  runs at the CFG scale; ``0.0 <= step / total_steps <= opts.skip_early_cond`` holds at the first evaluation with
  the default 0, so every pass starts with one evaluation at CFG 1 (stock too).
* **Forge Neo**, nolanlane/sd-webui-forge-classic ``6e1e0d5a`` (a copy of Haoming02's neo branch):
  ``backend/sampling/sampling_function.py`` and ``condition.py`` as Forge 2.x, post-CFG functions get
  ``cond_scale``; ``modules/sd_samplers_cfg_denoiser.py`` as Forge 2.x for what negguide reads.
"""

from __future__ import annotations

import math

import torch

from . import forge as F
from .forge import Program, module


class CONDRegular:
    def __init__(self, cond):
        self.cond = cond


class CONDCrossAttn(CONDRegular):
    pass


def cond_from_a1111_to_patched_ldm(cond):
    if isinstance(cond, torch.Tensor):
        return [{"cross_attn": cond, "model_conds": {"c_crossattn": CONDCrossAttn(cond)}}]
    return [{"cross_attn": cond["crossattn"], "pooled_output": cond["vector"],
             "model_conds": {"c_crossattn": CONDCrossAttn(cond["crossattn"]), "y": CONDRegular(cond["vector"])}}]


def _unet_cond(entries: list) -> dict:
    """The tiny model's conditioning for entries batched into one call."""
    ctx = torch.cat([e["model_conds"]["c_crossattn"].cond for e in entries])
    if "y" in entries[0]["model_conds"]:
        return {"crossattn": ctx, "vector": torch.cat([e["model_conds"]["y"].cond for e in entries])}
    return {"c_crossattn": [ctx]}


def calc_cond_batch(model, conds, x_in, timestep, model_options):
    """ComfyUI's evaluator: every entry of every conditioning (None: skipped, zeros out), entries of one shape in
    one batched call, each conditioning's output the strength-weighted mean of its entries."""
    outs = [torch.zeros_like(x_in) for _ in conds]
    counts = [torch.ones_like(x_in) * 1e-37 for _ in conds]
    to_run = [(e, i) for i, c in enumerate(conds) if c is not None for e in c]
    while to_run:
        shape = to_run[0][0]["model_conds"]["c_crossattn"].cond.shape
        fits = [r[0]["model_conds"]["c_crossattn"].cond.shape == shape for r in to_run]
        batch = [r for r, f in zip(to_run, fits, strict=True) if f]
        to_run = [r for r, f in zip(to_run, fits, strict=True) if not f]
        n = len(batch)
        out = model(torch.cat([x_in] * n), torch.cat([timestep] * n), cond=_unet_cond([e for e, _ in batch]))
        for (e, i), o in zip(batch, out.chunk(n), strict=True):
            outs[i] += o * e.get("strength", 1.0)
            counts[i] += e.get("strength", 1.0)
    return [o / c for o, c in zip(outs, counts, strict=True)]


def calc_cond_uncond_batch(model, cond, uncond, x_in, timestep, model_options):
    return tuple(calc_cond_batch(model, [cond, uncond], x_in, timestep, model_options))


def _compiled(denoiser, params):
    return (cond_from_a1111_to_patched_ldm(params.text_uncond) if params.text_uncond is not None else None,
            cond_from_a1111_to_patched_ldm(F.weighted_rows(params.text_cond)))


def _post_cfg(model_options, args):
    for fn in model_options.get("sampler_post_cfg_function", []):
        args["denoised"] = fn(dict(args))
    return args["denoised"]


def reforge_sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options):
    skip = math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False)
    uncond_ = None if skip else uncond
    conds = [cond, uncond_]
    if "sampler_calc_cond_batch_function" in model_options:
        args = {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options}
        cond_pred, uncond_pred = model_options["sampler_calc_cond_batch_function"](args)
    else:
        cond_pred, uncond_pred = calc_cond_batch(model, conds, x, timestep, model_options)
    cfg = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    return _post_cfg(model_options, {"denoised": cfg, "cond": cond, "uncond": uncond_, "cond_scale": cond_scale,
                                     "model": model, "uncond_denoised": uncond_pred, "cond_denoised": cond_pred,
                                     "sigma": timestep, "model_options": model_options, "input": x})


def reforge_denoise(denoiser, params, cond_scale, s_min_uncond):
    p, opts, sigma = denoiser.p, denoiser.webui.opts, params.sigma
    if p.is_hr_pass:
        cond_scale = p.hr_cfg
    ngms = opts.s_min_uncond  # the option, not the request's s_min_uncond
    skip_uncond = ngms > 0 and sigma[0] < ngms and (denoiser.step % 2 == 0 or opts.s_min_uncond_all)
    if not skip_uncond and (denoiser.step < opts.skip_early_cond or (
            opts.skip_early_cond != 0 and denoiser.step / denoiser.total_steps <= opts.skip_early_cond)):
        skip_uncond = True
    unet = denoiser.webui.sd_model.forge_objects.unet
    uncond, cond = _compiled(denoiser, params)
    if skip_uncond:
        return reforge_sampling_function(unet.model, params.x, sigma, None, cond, 1.0, unet.model_options)
    return reforge_sampling_function(unet.model, params.x, sigma, uncond, cond, cond_scale, unet.model_options)


def classic_sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options):
    skip = math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False)
    cond_pred, uncond_pred = calc_cond_uncond_batch(model, cond, None if skip else uncond, x, timestep, model_options)
    cfg = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    return _post_cfg(model_options, {"denoised": cfg, "cond": cond, "uncond": uncond, "model": model,
                                     "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                                     "model_options": model_options, "input": x})


def classic_denoise(denoiser, params, cond_scale, s_min_uncond):
    opts, sigma = denoiser.webui.opts, params.sigma
    if 0.0 <= denoiser.step / denoiser.total_steps <= opts.skip_early_cond:  # true at step 0 with the default 0
        cond_scale = 1.0
    if s_min_uncond > 0.0 and sigma[0] < s_min_uncond:
        cond_scale = 1.0
    unet = denoiser.webui.sd_model.forge_objects.unet
    uncond, cond = _compiled(denoiser, params)
    return classic_sampling_function(unet.model, params.x, sigma, uncond, cond, cond_scale, unet.model_options)


def neo_denoise(denoiser, params, cond_scale, s_min_uncond):
    return F.forge_denoise(denoiser, params, cond_scale, s_min_uncond, post_cfg_keys=("cond_scale",))


def ldm_patched_layout(with_calc_cond_batch: bool) -> dict:
    """reForge's / Classic's import layout; ``backend`` is not importable there."""
    sampler_fns = {"calc_cond_uncond_batch": calc_cond_uncond_batch}
    if with_calc_cond_batch:
        sampler_fns["calc_cond_batch"] = calc_cond_batch
    samplers = module("ldm_patched.modules.samplers", **sampler_fns)
    conds = module("ldm_patched.modules.conds", CONDRegular=CONDRegular, CONDCrossAttn=CONDCrossAttn)
    modules = module("ldm_patched.modules", samplers=samplers, conds=conds)
    forge_sampler = module("modules_forge.forge_sampler", cond_from_a1111_to_patched_ldm=cond_from_a1111_to_patched_ldm)
    return {"backend": None, "ldm_patched": module("ldm_patched", modules=modules), "ldm_patched.modules": modules,
            "ldm_patched.modules.samplers": samplers, "ldm_patched.modules.conds": conds,
            "modules_forge": module("modules_forge", forge_sampler=forge_sampler),
            "modules_forge.forge_sampler": forge_sampler}


REFORGE = Program("reForge (3b56b268)", reforge_denoise, lambda: ldm_patched_layout(with_calc_cond_batch=True))
CLASSIC = Program("Forge Classic (1f95d717)", classic_denoise, lambda: ldm_patched_layout(with_calc_cond_batch=False))
NEO = Program("Forge Neo (6e1e0d5a)", neo_denoise, F.backend_sampling_layout)
PROGRAMS = {"forge": F.FORGE, "reforge": REFORGE, "classic": CLASSIC, "neo": NEO}
