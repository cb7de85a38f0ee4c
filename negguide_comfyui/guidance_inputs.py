"""From a node's inputs to a validated :class:`~negguide_comfyui.patch.Guidance` (shared by guiders and patches)."""

from __future__ import annotations

from types import MappingProxyType

from .model_kind import model_kind, refuse_unsupported
from .modes import Mode
from .patch import Guidance
from .trace import Trace

EMPTY_TOOLTIP = ("The empty prompt (a CLIP Text Encode of \"\"): the unconditional branch wherever the mode needs "
                 "one (outside a window, DNS, DNG's CFG term), as in ComfyUI's PerpNegGuider.")
TRACE_TOOLTIP = "Records of the guided passes of the latest prompt, for the Negative Guidance Plot node."


def make_guidance(mode: Mode, values: dict, model, empty_conditioning, cfg_scale: float) -> Guidance:
    """Validates everything that can be checked before sampling (the core's checks of the settings, the model
    family); ``cfg_scale`` is the guider's, or a nominal one for a patch (the sampler's is checked when it runs)."""
    guidance = Guidance(mode, MappingProxyType(dict(values)), model_kind(model), empty_conditioning, Trace())
    refuse_unsupported(guidance.spec(cfg_scale), guidance.kind, None)
    return guidance
