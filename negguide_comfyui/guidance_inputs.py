"""From a node's inputs to a validated :class:`~negguide_comfyui.patch.Guidance` (shared by guiders and patches):
the socket tooltips, the empty prompt (given, or encoded with the checkpoint's CLIP), the checks."""

from __future__ import annotations

from types import MappingProxyType

from negguide import SettingsError

from .model_kind import model_kind, refuse_unsupported
from .modes import Mode
from .patch import Guidance
from .trace import Trace

MODEL_TOOLTIP = "The diffusion model to guide (Load Checkpoint's MODEL)."
POSITIVE_TOOLTIP = "The prompt (a CLIP Text Encode of what the image should show)."
NEGATIVE_TOOLTIP = "The negative prompt (a CLIP Text Encode of what to guide away from)."
EMPTY_TOOLTIP = ("Optional: the empty prompt, a CLIP Text Encode of \"\" (as ComfyUI's PerpNegGuider takes it). "
                 "Leave it unconnected and connect 'clip' instead: the node encodes the empty prompt itself. It is the "
                 "unconditional branch wherever the mode needs one (outside a window, DNS, DNG's CFG term).")
CLIP_TOOLTIP = ("Optional: the checkpoint's CLIP. The node encodes the empty prompt with it, exactly as CLIP Text "
                "Encode of \"\" would, when 'empty_conditioning' is not connected.")
TRACE_TOOLTIP = "Records of the guided passes of the latest prompt, for the Negative Guidance Plot node."
NO_EMPTY_PROMPT = ("negguide needs the empty prompt: connect the checkpoint's CLIP to 'clip' (the node encodes it), or "
                   "a CLIP Text Encode of an empty text to 'empty_conditioning'")

# the sockets every negguide node takes besides its mode's widgets: (name, ComfyUI input spec)
EMPTY_SOCKETS = (("empty_conditioning", ("CONDITIONING", {"tooltip": EMPTY_TOOLTIP})),
                 ("clip", ("CLIP", {"tooltip": CLIP_TOOLTIP})))


def encode_empty(clip) -> list:
    """ComfyUI's CLIP Text Encode of "" with ``clip`` (older ComfyUI versions lack the scheduled encoder)."""
    tokens = clip.tokenize("")
    if hasattr(clip, "encode_from_tokens_scheduled"):
        return clip.encode_from_tokens_scheduled(tokens)
    output = clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
    cond = output.pop("cond")
    return [[cond, output]]


def empty_prompt(empty_conditioning, clip) -> list:
    """The empty prompt's CONDITIONING: the one given, else encoded with ``clip``."""
    if empty_conditioning is not None:
        return empty_conditioning
    if clip is None:
        raise SettingsError([NO_EMPTY_PROMPT])
    return encode_empty(clip)


def make_guidance(mode: Mode, values: dict, model, empty_conditioning, cfg_scale: float, clip=None) -> Guidance:
    """Validates everything that can be checked before sampling (the core's checks of the settings, the model
    family); ``cfg_scale`` is the guider's, or a nominal one for a patch (the sampler's is checked when it runs)."""
    kind = model_kind(model)
    guidance = Guidance(mode, MappingProxyType(dict(values)), kind, [], Trace())
    refuse_unsupported(guidance.spec(cfg_scale), kind, None)  # before the CLIP encodes anything
    return Guidance(mode, guidance.values, kind, empty_prompt(empty_conditioning, clip), guidance.trace)
