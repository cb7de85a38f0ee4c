"""The model patch behind every negguide node: two ComfyUI sampling wrappers on a clone of the model.

* ``outer_sample`` (around ``CFGGuider.outer_sample``): adds the empty prompt to the guider's conditionings of
  this call, so ComfyUI prepares it like the others (areas, masks, SDXL's size vector, ControlNet, hooks);
* ``sampler_sample`` (around ``KSAMPLER.sample``): where the sampler object, the schedule, the noise and the
  prepared conditionings are known, starts a :class:`~negguide_comfyui.guided_pass.GuidedPass` and hands the
  sampler a copy of this call's ``model_options`` with the pass's ``calc_cond_batch`` and post-CFG functions.

The patched model holds the settings only (immutable); the guidance state lives in the pass, in that per-call
copy, and is gone when the sampler returns or raises: an interrupted prompt leaves nothing behind, and two
patched models (or two samplers with one) never share state. A guider node is this patch plus ComfyUI's own
``CFGGuider``, so KSampler + patch and SamplerCustomAdvanced + guider sample the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from negguide import SettingsError

from .guided_pass import start_pass
from .idle import idle_reason
from .model_kind import ModelKind
from .modes import Mode
from .trace import Trace

EMPTY_KEY = "negguide_empty"  # the empty prompt among the guider's conditionings (only inside a sampling call)
WRAPPER_KEY = "negguide"  # a second negguide patch on the same model replaces the first
# ComfyUI's guider classes by the node a user places (the refusals name what is on the canvas)
GUIDER_NODES = {"Guider_Basic": "BasicGuider", "Guider_DualCFG": "DualCFGGuider", "Guider_PerpNeg": "PerpNegGuider",
                "Guider_DualModel": "DualModelGuider", "Guider_LTXAVDualCFG": "LTXVDualCFGGuider"}
log = logging.getLogger("negguide")


@dataclass(frozen=True)
class Guidance:
    """A mode with its settings, for one model: everything a patched model carries."""

    mode: Mode
    values: MappingProxyType
    kind: ModelKind
    empty: list  # ComfyUI CONDITIONING of the empty prompt
    trace: Trace

    def spec(self, cfg_scale: float):
        return self.mode.spec(self.values, cfg_scale, self.kind.frame)


def patch(model, guidance: Guidance):
    """A clone of ``model`` (a ComfyUI ``ModelPatcher``) guided by ``guidance``."""
    from comfy.patcher_extension import WrappersMP

    patched = model.clone()
    for kind, wrapper in ((WrappersMP.OUTER_SAMPLE, _outer_sample), (WrappersMP.SAMPLER_SAMPLE, _sampler_sample)):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, partial(wrapper, guidance))
    return patched


def _outer_sample(guidance: Guidance, executor, *args, **kwargs):
    from comfy.sampler_helpers import convert_cond

    guider = executor.class_obj
    # the empty prompt plays the unconditional part: ComfyUI prepares it as a negative (SDXL refiner's aesthetic
    # score), as its PerpNegGuider does
    empty = [[c, {**extras, "prompt_type": "negative"}] for c, extras in guidance.empty]
    guider.conds[EMPTY_KEY] = convert_cond(empty)  # guider.conds is this call's copy, dropped after it
    return executor(*args, **kwargs)


def _sampler_sample(guidance: Guidance, executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
    if sigmas.shape[-1] <= 1:  # nothing to sample
        return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)
    conds = _branch_conds(guidance, guider)
    options = extra_args["model_options"]
    evaluate = partial(_evaluate, options.get("sampler_calc_cond_batch_function"))
    guidance.trace.start_pass()
    spec = guidance.spec(guider.cfg)
    guided = start_pass(spec, guidance.kind, executor.class_obj, sigmas, noise, extra_args.get("seed"), conds,
                        guidance.mode.title, evaluate)
    options = {**options, "sampler_calc_cond_batch_function": guided.calc_cond_batch,
               "sampler_post_cfg_function": [guided.post_cfg, *options.get("sampler_post_cfg_function", [])]}
    samples = executor(guider, sigmas, {**extra_args, "model_options": options}, callback, noise, *args, **kwargs)
    summary = guided.summary(samples, sigmas)
    summary.idle = idle_reason(spec, summary.records, summary.batch_size, summary.steps)
    if summary.idle:
        log.warning("negguide %s: the negative prompt never acted in this pass (%s)", guidance.mode.title,
                    summary.idle)
    guidance.trace.add(summary)
    return samples


def guider_node(guider) -> str:
    """The node a user placed for ``guider`` (ComfyUI's guider classes are named otherwise)."""
    name = type(guider).__name__
    return f"the {GUIDER_NODES[name]} node" if name in GUIDER_NODES else f"the guider node {name}"


def _branch_conds(guidance: Guidance, guider) -> dict[str, list]:
    """The prepared conditionings of the branches; refuses guiders that do not run ComfyUI's CFG."""
    import comfy.samplers

    title, name = guidance.mode.title, guider_node(guider)
    if type(guider).predict_noise is not comfy.samplers.CFGGuider.predict_noise:
        raise SettingsError([f"the {title} (negguide) model works through ComfyUI's CFG (KSampler, SamplerCustom, "
                             f"CFGGuider); {name} computes its own guidance: use a negguide guider instead"])
    conds = {"positive": guider.conds.get("positive"), "negative": guider.conds.get("negative"),
             "empty": guider.conds.get(EMPTY_KEY)}
    missing = [k for k in ("positive", "negative") if conds[k] is None]
    if conds["positive"] is None or (missing and guidance.mode.uses_negative):
        raise SettingsError([f"the {title} (negguide) model needs a positive and a negative conditioning; {name} "
                             f"has no {' and no '.join(missing)} (use KSampler, CFGGuider or a negguide guider)"])
    return conds


def _evaluate(previous, model, conds, x, sigma, options):
    """ComfyUI's calc_cond_batch, or the calc_cond_batch function another patch installed before negguide."""
    if previous is not None:
        return previous({"conds": conds, "input": x, "sigma": sigma, "model": model, "model_options": options})
    import comfy.samplers

    return comfy.samplers.calc_cond_batch(model, conds, x, sigma, options)
