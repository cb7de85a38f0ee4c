"""GUIDER nodes for SamplerCustomAdvanced: the mode's model patch with ComfyUI's own CFGGuider."""

from __future__ import annotations

from negguide import is_finite_number

from .guidance_inputs import (
    EMPTY_SOCKETS,
    MODEL_TOOLTIP,
    NEGATIVE_TOOLTIP,
    POSITIVE_TOOLTIP,
    TRACE_TOOLTIP,
    make_guidance,
)
from .modes import ADAPTIVE, CONSTANT_NEGATIVE, DNG, DNS, PERP_NEG, SLD, WINDOWED, Mode
from .patch import patch as patch_model
from .validation import validate

DNS_CONVENTION = (" dns_scale is s itself; the DNS model patch on a KSampler at cfg s + 1 samples the same image "
                  "(CFG with the prompts swapped).")


class _GuiderNode:
    MODE: Mode
    RETURN_TYPES = ("GUIDER", "NEGGUIDE_TRACE")
    RETURN_NAMES = ("guider", "trace")
    OUTPUT_TOOLTIPS = ("For SamplerCustomAdvanced.", TRACE_TOOLTIP)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders/negguide"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extra = DNS_CONVENTION if cls.MODE is DNS else ""
        cls.DESCRIPTION = f"{cls.MODE.title} (negguide) for SamplerCustomAdvanced. {cls.MODE.summary}{extra}"

    @classmethod
    def INPUT_TYPES(cls):
        mode = cls.MODE
        required = {"model": ("MODEL", {"tooltip": MODEL_TOOLTIP}),
                    "positive": ("CONDITIONING", {"tooltip": POSITIVE_TOOLTIP})}
        if mode.uses_negative:
            required["negative"] = ("CONDITIONING", {"tooltip": NEGATIVE_TOOLTIP})
        scale_name, scale_input, _ = mode.guider_scale
        required[scale_name] = scale_input
        required.update(mode.widgets)
        return {"required": required, "optional": {**dict(EMPTY_SOCKETS), **mode.optional}}

    @classmethod
    def VALIDATE_INPUTS(cls, **values):
        """When the prompt is queued: every widget and the mode's settings at this guider's scale."""
        scale_name, _, to_cfg = cls.MODE.guider_scale
        scale = values.get(scale_name)
        inputs = cls.INPUT_TYPES()
        cfg = float(to_cfg(scale)) if is_finite_number(scale) else None  # a bad scale is the widgets' problem
        return validate(f"{cls.MODE.title} Guider (negguide)", cls.MODE, {**inputs["required"], **inputs["optional"]},
                        values, cfg)

    def get_guider(self, model, positive, empty_conditioning=None, negative=None, clip=None, **values):
        import comfy.samplers

        mode = self.MODE
        scale_name, _, to_cfg = mode.guider_scale
        cfg = float(to_cfg(values.pop(scale_name)))
        guidance = make_guidance(mode, values, model, empty_conditioning, cfg, clip)
        guider = comfy.samplers.CFGGuider(patch_model(model, guidance))
        # DNS guides with the positive and empty prompts only; CFGGuider wants a negative slot all the same
        guider.set_conds(positive, guidance.empty if negative is None else negative)
        guider.set_cfg(cfg)
        return (guider, guidance.trace)


class NegGuideWindowedGuider(_GuiderNode):
    MODE = WINDOWED


class NegGuideDNGGuider(_GuiderNode):
    MODE = DNG


class NegGuideDNSGuider(_GuiderNode):
    MODE = DNS


class NegGuideSLDGuider(_GuiderNode):
    MODE = SLD


class NegGuidePerpNegGuider(_GuiderNode):
    MODE = PERP_NEG


class NegGuideAdaptiveGuider(_GuiderNode):
    MODE = ADAPTIVE


class NegGuideConstantNegativeGuider(_GuiderNode):
    MODE = CONSTANT_NEGATIVE


GUIDERS = {c.__name__: c for c in (NegGuideWindowedGuider, NegGuideDNGGuider, NegGuideDNSGuider, NegGuideSLDGuider,
                                   NegGuidePerpNegGuider, NegGuideAdaptiveGuider, NegGuideConstantNegativeGuider)}
GUIDER_NAMES = {name: f"{c.MODE.title} Guider (negguide)" for name, c in GUIDERS.items()}
