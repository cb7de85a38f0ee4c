"""A test harness that behaves like Forge (f2.x, WebUI 1.10 base) around the CFG denoiser.

Written for negguide (not copied): it mirrors ``modules/sd_samplers_cfg_denoiser.py``
(``CFGDenoiser.forward``)
and ``backend/sampling/sampling_function.py`` (``sampling_function``, ``sampling_function_inner``) of
lllyasviel/stable-diffusion-webui-forge at commit dfdcbab6 (the patcher's ``clone`` /
``set_model_sampler_post_cfg_function`` of ``backend/patcher/unet.py`` at the same commit), plus what was
observed on a real f2.0.1v1.10.1:

* ``on_cfg_denoiser`` gets only the B image rows in ``params.x``; ``on_cfg_denoised`` is never called;
* the conditionings are compiled (``compile_conditions``) and evaluated by ``calc_cond_uncond_batch``;
  uncond is skipped (``None``) at CFG 1 (the hires pass uses ``p.hr_cfg``, 1 by default);
* post-CFG functions get ``denoised, cond, uncond, model, uncond_denoised, cond_denoised, sigma,
  model_options, input`` in x0 space and no CFG scale; ``uncond_denoised`` is zeros when uncond was skipped;
* cloning the UNet patcher deep-copies ``model_options`` (a bound-method post-CFG function would be copied
  with its instance); ``forge_objects`` is reset from a pristine copy for every batch and the hires pass;
* ``process_before_every_sampling`` runs twice in the hires pass; inpainting blends after the post-CFG.

The program is pluggable (:class:`Program`: what it does after ``on_cfg_denoiser`` and which modules it exposes
to ``import``): :data:`FORGE` here, the forks in ``forge_forks.py``. During ``process_images`` the program's
module layout is in ``sys.modules``, so that the extension finds its API the way it does in the real program.
"""

from __future__ import annotations

import copy
import math
import sys
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from negguide_webui.forge_api import ForgeAPI, pairwise

from . import a1111 as A
from .tinysd import TinySD


class UnetPatcher:
    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}
        self.controlnet_linked_list = None

    def clone(self):
        n = UnetPatcher(self.model)
        n.model_options = copy.deepcopy(self.model_options)
        n.controlnet_linked_list = self.controlnet_linked_list
        return n

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options.setdefault("sampler_post_cfg_function", []).append(fn)
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True


class ForgeObjects:
    def __init__(self, unet):
        self.unet = unet

    def shallow_copy(self):
        return ForgeObjects(self.unet)


class Condition:
    def __init__(self, cond):
        self.cond = cond


def weighted_rows(cond):
    """The row selection of ``forge_sampler.cond_from_a1111_to_patched_ldm_weighted`` (one prompt per image:
    every row): ``advanced_indexing`` for a dict conditioning, which a plain dict lacks (a TypeError there)."""
    rows = list(range(cond.shape[0] if not isinstance(cond, dict) else cond["crossattn"].shape[0]))
    return cond.advanced_indexing(rows) if hasattr(cond, "advanced_indexing") else cond[rows]


def compile_conditions(cond):
    if cond is None:
        return None
    return [{"model_conds": {"c_crossattn": Condition(cond)}, "strength": 1.0}]


def _model_cond(entry, rows=None):
    c = entry["model_conds"]["c_crossattn"].cond
    out = dict(c) if isinstance(c, dict) else {"c_crossattn": [c]}
    if "c_concat" in entry["model_conds"]:
        out["c_concat"] = [entry["model_conds"]["c_concat"].cond]
    return out


def calc_cond_uncond_batch(model, cond, uncond, x_in, timestep, model_options):
    """Evaluate each compiled entry on the whole batch (cond first), batching entries of equal shapes."""
    entries = [(e, 0) for e in cond] + ([(e, 1) for e in uncond] if uncond is not None else [])
    outs = [torch.zeros_like(x_in), torch.zeros_like(x_in)]

    def ctx(e):
        c = e["model_conds"]["c_crossattn"].cond
        return c["crossattn"] if isinstance(c, dict) else c

    if (
        len(entries) == 2
        and ctx(entries[0][0]).shape == ctx(entries[1][0]).shape
        and "c_concat" not in entries[0][0]["model_conds"]
    ):
        a, b = (
            entries[0][0]["model_conds"]["c_crossattn"].cond,
            entries[1][0]["model_conds"]["c_crossattn"].cond,
        )
        both = {k: torch.cat([a[k], b[k]]) for k in a} if isinstance(a, dict) else torch.cat([a, b])
        c = dict(both) if isinstance(both, dict) else {"c_crossattn": [both]}
        out = model(torch.cat([x_in, x_in]), torch.cat([timestep, timestep]), cond=c)
        return out[: x_in.shape[0]], out[x_in.shape[0] :]
    for e, which in entries:
        outs[which] = outs[which] + model(x_in, timestep, cond=_model_cond(e)) * e.get("strength", 1.0)
    return outs[0], outs[1]


API = ForgeAPI(compile_conditions, pairwise(calc_cond_uncond_batch), "harness: Forge 2.x backend.sampling")


def sampling_function(denoiser, params, cond_scale, post_cfg_keys=()):
    unet = denoiser.webui.sd_model.forge_objects.unet
    model = unet.model
    x, timestep = params.x, params.sigma
    uncond = compile_conditions(params.text_uncond)
    cond = compile_conditions(weighted_rows(params.text_cond))
    model_options = unet.model_options
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond_ = None
    else:
        uncond_ = uncond
    cond_pred, uncond_pred = calc_cond_uncond_batch(model, cond, uncond_, x, timestep, model_options)
    cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {
            "denoised": cfg_result,
            "cond": cond,
            "uncond": uncond,
            "model": model,
            "uncond_denoised": uncond_pred,
            "cond_denoised": cond_pred,
            "sigma": timestep,
            "model_options": model_options,
            "input": x,
        }
        if "cond_scale" in post_cfg_keys:  # Forge Neo adds it
            args["cond_scale"] = cond_scale
        cfg_result = fn(args)
    return cfg_result, cond_pred, uncond_pred


def forge_denoise(denoiser, params, cond_scale, s_min_uncond, post_cfg_keys=()):
    """Forge 2.x after ``on_cfg_denoiser``: the CFG scale of the pass and step, then its sampling function."""
    p, opts, sigma = denoiser.p, denoiser.webui.opts, params.sigma
    if p.is_hr_pass:
        cond_scale = p.hr_cfg
    if opts.skip_early_cond > 0 and denoiser.step / denoiser.total_steps <= opts.skip_early_cond:
        cond_scale = 1.0
    elif (denoiser.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
        cond_scale = 1.0
    return sampling_function(denoiser, params, cond_scale, post_cfg_keys)[0]


def module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def backend_sampling_layout() -> dict:
    """Forge 2.x's (and Neo's) import layout for the two functions the extension borrows."""
    condition = module("backend.sampling.condition", compile_conditions=compile_conditions, Condition=Condition)
    sf = module("backend.sampling.sampling_function", calc_cond_uncond_batch=calc_cond_uncond_batch)
    sampling = module("backend.sampling", condition=condition, sampling_function=sf)
    return {"backend": module("backend", sampling=sampling), "backend.sampling": sampling,
            "backend.sampling.condition": condition, "backend.sampling.sampling_function": sf}


@dataclass(frozen=True)
class Program:
    """One program of the Forge line, as the harness plays it."""

    name: str
    denoise: Callable  # (denoiser, params, cond_scale, s_min_uncond) -> x0, run after on_cfg_denoiser
    layout: Callable[[], dict]  # module name -> module (None: not importable) that the program exposes


FORGE = Program("Forge 2.x (dfdcbab6)", forge_denoise, backend_sampling_layout)


@contextmanager
def exposed(modules: dict):
    """``modules`` importable for the duration (None entries make an import fail), sys.modules restored after."""
    saved = {name: sys.modules.get(name, _ABSENT) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


_ABSENT = object()


class ForgeCFGDenoiser(A.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = A.CompVisDenoiser(self.webui.sd_model)
        return self.model_wrap

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        w = self.webui
        state = w.state
        if state.interrupted or state.skipped:
            raise A.InterruptedException
        conds_list, cond = A.reconstruct_multicond_batch(cond, self.step)
        if len(conds_list) != cond.shape[0] if not isinstance(cond, dict) else False:
            raise NotImplementedError("the Forge harness has no AND prompts")
        uncond = A.reconstruct_cond_batch(uncond, self.step) if uncond is not None else None
        params = A.CFGDenoiserParams(
            x, image_cond, sigma, state.sampling_step, state.sampling_steps, cond, uncond, self
        )
        w.callbacks.cfg_denoiser_callback(params)
        denoised = self.p.program.denoise(self, params, cond_scale, s_min_uncond)
        if self.mask is not None:
            denoised = denoised * self.nmask + self.init_latent * self.mask
        after = A.AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        w.callbacks.cfg_after_cfg_callback(after)
        self.step += 1
        return after.x


class ForgeSampler(A.Sampler):
    def __init__(self, name, webui):
        if A.SAMPLERS[name][0] != "k":
            raise ValueError("Forge hands every sampler sigmas and x0: use a k-diffusion sampler name")
        super().__init__(name, webui)
        self.model_wrap_cfg = ForgeCFGDenoiser(self, webui)


def make_forge_model(sd: TinySD) -> TinySD:
    """Give the tiny model Forge's ``forge_objects`` (what the extension detects Forge by)."""
    patcher = UnetPatcher(A.CompVisDenoiser(sd))
    sd.forge_objects_original = ForgeObjects(patcher)
    sd.forge_objects_after_applying_lora = ForgeObjects(patcher)
    sd.forge_objects = ForgeObjects(patcher)
    return sd


@dataclass
class ForgeProcessing(A.Processing):
    hr_cfg: float = 1.0
    program: Program = FORGE


def process_images(p) -> A.Processed:
    """Forge's ``process_images_inner`` order: as A1111's, with ``forge_objects`` reset per sampling and
    ``process_before_every_sampling`` twice in the hires pass; the program's modules importable meanwhile."""
    sd = p.sd_model
    sd.forge_objects = sd.forge_objects_original.shallow_copy()
    orig_sampler = A.Sampler
    orig_before = p.scripts.process_before_every_sampling if p.scripts is not None else None

    def before(pp, **kw):
        sd.forge_objects = sd.forge_objects_after_applying_lora.shallow_copy()
        orig_before(pp, **kw)
        if pp.is_hr_pass:
            orig_before(pp, **kw)

    A.Sampler = ForgeSampler
    if p.scripts is not None:
        p.scripts.process_before_every_sampling = before
    try:
        with exposed(p.program.layout()):
            return A.process_images(p)
    finally:
        A.Sampler = orig_sampler
        if p.scripts is not None:
            p.scripts.process_before_every_sampling = orig_before
