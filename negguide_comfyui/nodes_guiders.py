"""GUIDER nodes for SamplerCustomAdvanced: the mode's model patch with ComfyUI's own CFGGuider."""

from __future__ import annotations

from .guidance_inputs import EMPTY_TOOLTIP, TRACE_TOOLTIP, make_guidance
from .modes import DNG, DNS, PERP_NEG, SLD, WINDOWED, Mode
from .patch import patch as patch_model


class _GuiderNode:
    MODE: Mode
    RETURN_TYPES = ("GUIDER", "NEGGUIDE_TRACE")
    RETURN_NAMES = ("guider", "trace")
    OUTPUT_TOOLTIPS = ("For SamplerCustomAdvanced.", TRACE_TOOLTIP)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders/negguide"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.DESCRIPTION = f"{cls.MODE.title} (negguide) for SamplerCustomAdvanced. {cls.MODE.summary}"

    @classmethod
    def INPUT_TYPES(cls):
        mode = cls.MODE
        required = {"model": ("MODEL",), "positive": ("CONDITIONING",)}
        if mode.uses_negative:
            required["negative"] = ("CONDITIONING",)
        required["empty_conditioning"] = ("CONDITIONING", {"tooltip": EMPTY_TOOLTIP})
        scale_name, scale_input, _ = mode.guider_scale
        required[scale_name] = scale_input
        required.update(mode.widgets)
        return {"required": required, "optional": dict(mode.optional)}

    def get_guider(self, model, positive, empty_conditioning, negative=None, **values):
        import comfy.samplers

        mode = self.MODE
        scale_name, _, to_cfg = mode.guider_scale
        cfg = float(to_cfg(values.pop(scale_name)))
        guidance = make_guidance(mode, values, model, empty_conditioning, cfg)
        guider = comfy.samplers.CFGGuider(patch_model(model, guidance))
        # DNS guides with the positive and empty prompts only; CFGGuider wants a negative slot all the same
        guider.set_conds(positive, empty_conditioning if negative is None else negative)
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


GUIDERS = {c.__name__: c for c in (NegGuideWindowedGuider, NegGuideDNGGuider, NegGuideDNSGuider, NegGuideSLDGuider,
                                   NegGuidePerpNegGuider)}
GUIDER_NAMES = {name: f"{c.MODE.title} Guider (negguide)" for name, c in GUIDERS.items()}
