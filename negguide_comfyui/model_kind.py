"""What negguide needs to know about a ComfyUI model: its frame, whether it is guidance-distilled, and which
modes it cannot run.

ComfyUI's samplers all work with a denoised (x0) prediction at ComfyUI's sigma; what the state means follows
the model's ``model_sampling`` (``comfy/model_sampling.py``):

* ``EPS``, ``V_PREDICTION``, ``EDM``, ``X0``, ``IMG_TO_IMG``, ``COSMOS_RFLOW`` (SD 1.x/2.x, SDXL, ...), and
  ``V_PREDICTION_DDPM`` (CogVideoX, ComfyUI v0.33: its ``noise_scaling`` is ``latent + sigma noise`` and its
  ``calculate_denoised`` returns x0, whatever the model is fed): ``x = x0 + sigma eps``, the k-diffusion frame;
* ``CONST`` (SD3, Flux, AuraFlow, ...: rectified flow): ``x = (1 - t) x0 + t eps`` with ComfyUI's sigma = ``t``,
  and the model's velocity already converted to x0 by ``calculate_denoised``: a flow-time frame with an x0
  prediction (not ``Frame.rectified_flow()``, whose prediction is the velocity). The core's rules for flow models
  key on the frame's noise level, so this frame is all they need;
* ``IMG_TO_IMG_FLOW`` (a ``CONST`` subclass, ComfyUI v0.33: WAN's FlowRVS, ``ModelSamplingDiscrete``'s
  img_to_img_flow): the sampler starts from an image, not from noise (``noise_scaling`` returns the latent), so the
  state is no noisy image of a clean one: the modes that read the noise level's meaning (DNG's posterior, SLD's eps
  threshold, the adaptive window's signal) are refused; the modes that only combine predictions run.
"""

from __future__ import annotations

from dataclasses import dataclass

from negguide import Frame, GuidanceSpec, SamplerInfo, check_compatible, raise_problems


@dataclass(frozen=True)
class ModelKind:
    frame: Frame
    guidance_distilled: bool  # Flux dev-type: the model applies a distilled guidance itself
    name: str  # for messages: the model class and its sampling type
    starts_from_image: bool = False  # IMG_TO_IMG_FLOW: no noise to denoise, the frame's noise level means nothing


def frame_of(model_sampling) -> Frame:
    import comfy.model_sampling

    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return Frame("x0", "flow_t", "vp")
    return Frame.k_diffusion()


def model_kind(model_patcher) -> ModelKind:
    """From a ComfyUI ``ModelPatcher`` (what a MODEL socket carries)."""
    sampling = model_patcher.get_model_object("model_sampling")
    base = model_patcher.model
    unet_config = getattr(getattr(base, "model_config", None), "unet_config", None) or {}
    name = f"{type(base).__name__} ({', '.join(c.__name__ for c in type(sampling).__bases__)})"
    return ModelKind(frame_of(sampling), bool(unet_config.get("guidance_embed", False)), name,
                     starts_from_image(sampling))


def starts_from_image(model_sampling) -> bool:
    """ComfyUI's ``IMG_TO_IMG_FLOW`` sampling (by name: versions before v0.33 do not have it)."""
    return any(cls.__name__ == "IMG_TO_IMG_FLOW" for cls in type(model_sampling).__mro__)


def reads_noise_level(spec: GuidanceSpec) -> bool:
    """Whether the mode's arithmetic reads what the state and noise level mean (its frame conversions), not only the
    predictions: DNG's posterior, SLD's eps threshold, the adaptive window's signal."""
    return spec.mode in ("dng", "sld") or (spec.mode == "adaptive" and spec.adaptive.signal != "none")


def refuse_unsupported(spec: GuidanceSpec, kind: ModelKind, sampler: SamplerInfo | None) -> None:
    """The model-family rules, before any model row runs: the core's (SLD and a stochastic transition tracker on a
    flow model), and guidance-distilled models (Flux dev), refused here: their predictions already carry a distilled
    guidance, there is no CFG to steer at cfg 1, and DNG's posterior needs the conditional predictions such a model
    does not make."""
    check_compatible(spec, kind.frame, sampler)
    raise_problems([
        (not (kind.guidance_distilled and spec.mode == "dng"),
         f"{kind.name} is guidance-distilled (Flux dev-type): DNG's posterior compares the model's conditional "
         f"predictions, which such a model does not make; use a model that is not guidance-distilled"),
        (not (kind.starts_from_image and reads_noise_level(spec)),
         f"{kind.name} samples from an image, not from noise (ComfyUI's IMG_TO_IMG_FLOW): {spec.guidance_mode().label} "
         f"reads what a noisy state means, which such a model's states do not; use the windowed, DNS, 3-term, "
         f"Perp-Neg or constant negative node, or the adaptive window with signal 'none'"),
        (not (kind.guidance_distilled and spec.cfg_scale <= 1.0),
         f"{kind.name} is guidance-distilled and runs without CFG (cfg {spec.cfg_scale:g}): a negative prompt has "
         f"nothing to act on; set cfg > 1 (twice the model rows) or use a model that is not guidance-distilled"),
    ])
