"""MODEL patch nodes: the same modes for the plain KSampler (and SamplerCustom, CFGGuider), with the sampler's
own positive, negative and cfg."""

from __future__ import annotations

from .guidance_inputs import EMPTY_TOOLTIP, TRACE_TOOLTIP, make_guidance
from .modes import DNG, DNS, PERP_NEG, SLD, WINDOWED, Mode
from .patch import patch as patch_model

# a patch does not know the sampler's cfg: the settings are checked at a typical scale here and with the real
# one when the sampler starts
_NOMINAL_CFG = 7.0


class _PatchNode:
    MODE: Mode
    RETURN_TYPES = ("MODEL", "NEGGUIDE_TRACE")
    RETURN_NAMES = ("model", "trace")
    OUTPUT_TOOLTIPS = ("The model, guided by this mode in KSampler / SamplerCustom / CFGGuider.", TRACE_TOOLTIP)
    FUNCTION = "apply"
    CATEGORY = "model_patches/negguide"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extra = " The sampler's cfg w sets s = w - 1 (the same as swapping the prompts)." if cls.MODE is DNS else ""
        cls.DESCRIPTION = (f"{cls.MODE.title} (negguide) for KSampler: the sampler's positive, negative and cfg, "
                           f"plus the empty prompt. {cls.MODE.summary}{extra}")

    @classmethod
    def INPUT_TYPES(cls):
        required = {"model": ("MODEL",), "empty_conditioning": ("CONDITIONING", {"tooltip": EMPTY_TOOLTIP})}
        required.update(cls.MODE.widgets)
        return {"required": required, "optional": dict(cls.MODE.optional)}

    def apply(self, model, empty_conditioning, **values):
        guidance = make_guidance(self.MODE, values, model, empty_conditioning, _NOMINAL_CFG)
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


PATCHES = {c.__name__: c for c in (NegGuideWindowedPatch, NegGuideDNGPatch, NegGuideDNSPatch, NegGuideSLDPatch,
                                   NegGuidePerpNegPatch)}
PATCH_NAMES = {name: f"{c.MODE.title} (negguide)" for name, c in PATCHES.items()}
