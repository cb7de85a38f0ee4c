"""MODEL patch nodes: the same modes for the plain KSampler (and SamplerCustom, CFGGuider), with the sampler's
own positive, negative and cfg."""

from __future__ import annotations

from .guidance_inputs import EMPTY_SOCKETS, MODEL_TOOLTIP, TRACE_TOOLTIP, make_guidance
from .modes import ADAPTIVE, CONSTANT_NEGATIVE, DNG, DNS, PERP_NEG, SLD, WINDOWED, Mode
from .patch import patch as patch_model
from .validation import NOMINAL_CFG, validate

DNS_CONVENTION = (" The sampler's cfg w sets s = w - 1 (the same as swapping the prompts): the DNS Guider with "
                  "dns_scale s samples what this patch does at cfg s + 1.")


class _PatchNode:
    MODE: Mode
    RETURN_TYPES = ("MODEL", "NEGGUIDE_TRACE")
    RETURN_NAMES = ("model", "trace")
    OUTPUT_TOOLTIPS = ("The model, guided by this mode in KSampler / SamplerCustom / CFGGuider.", TRACE_TOOLTIP)
    FUNCTION = "apply"
    CATEGORY = "model_patches/negguide"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extra = DNS_CONVENTION if cls.MODE is DNS else ""
        cls.DESCRIPTION = (f"{cls.MODE.title} (negguide) for KSampler: the sampler's positive, negative and cfg, "
                           f"plus the empty prompt. {cls.MODE.summary}{extra}")

    @classmethod
    def INPUT_TYPES(cls):
        required = {"model": ("MODEL", {"tooltip": MODEL_TOOLTIP})}
        required.update(cls.MODE.widgets)
        return {"required": required, "optional": {**dict(EMPTY_SOCKETS), **cls.MODE.optional}}

    @classmethod
    def VALIDATE_INPUTS(cls, **values):
        """When the prompt is queued: every widget and the mode's settings (at a typical cfg: the sampler's is
        checked when it runs)."""
        inputs = cls.INPUT_TYPES()
        return validate(f"{cls.MODE.title} (negguide)", cls.MODE, {**inputs["required"], **inputs["optional"]}, values,
                        None)

    def apply(self, model, empty_conditioning=None, clip=None, **values):
        guidance = make_guidance(self.MODE, values, model, empty_conditioning, NOMINAL_CFG, clip)
        return (patch_model(model, guidance), guidance.trace)


class NegGuideWindowedPatch(_PatchNode):
    MODE = WINDOWED


class NegGuideDNGPatch(_PatchNode):
    MODE = DNG


class NegGuideDNSPatch(_PatchNode):
    MODE = DNS


class NegGuideSLDPatch(_PatchNode):
    MODE = SLD


class NegGuidePerpNegPatch(_PatchNode):
    MODE = PERP_NEG


class NegGuideAdaptivePatch(_PatchNode):
    MODE = ADAPTIVE


class NegGuideConstantNegativePatch(_PatchNode):
    MODE = CONSTANT_NEGATIVE


PATCHES = {c.__name__: c for c in (NegGuideWindowedPatch, NegGuideDNGPatch, NegGuideDNSPatch, NegGuideSLDPatch,
                                   NegGuidePerpNegPatch, NegGuideAdaptivePatch, NegGuideConstantNegativePatch)}
PATCH_NAMES = {name: f"{c.MODE.title} (negguide)" for name, c in PATCHES.items()}
