"""From user-facing mode names and options to a :class:`negguide.spec.GuidanceSpec`, and back to text.

The front-end's modes are the core's (``np``, ``np3``, ``dns``, ``dng``, ``sld``, ``perp_neg``) plus two
names the CLI and the WebUIs use: ``off`` (``np`` without a window: the pipeline's own CFG with the negative
prompt) and ``windowed`` (``np`` with a step window, Ban et al.'s steps 5-15 of 30 when none is given).
"""

from __future__ import annotations

import json

from .. import MODES, AdaptiveStart, DNGConfig, GuidanceSpec, SettingsError, SLDConfig, StepWindow, config_from_dict

ALIASES = {"off": "np", "windowed": "np"}
FRONTEND_MODES = ("off", "windowed", *MODES)


def as_window(window) -> StepWindow | None:
    """A :class:`StepWindow`, a tuple ``(start, end)`` (1-based steps) / ``(start, end, unit)``, or None."""
    if window is None or isinstance(window, StepWindow):
        return window
    if isinstance(window, (tuple, list)) and len(window) in (2, 3):
        return StepWindow(*window)
    raise SettingsError([f"a window is a StepWindow or a tuple (start, end[, unit]), got {window!r}"])


def _config(value, cls, name):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return config_from_dict(cls, value)
        except TypeError as err:
            raise SettingsError([f"{name} settings: {err}"]) from None
    raise SettingsError([f"{name} must be a {cls.__name__} or a dict of its fields, got {type(value).__name__}"])


def build_spec(mode: str = "np", guidance_scale: float = 7.5, window=None, dns_scale: float | None = None, dng=None,
               sld=None, perp_neg_scale: float = 1.0, negative_scale: float = 1.0, adaptive=None) -> GuidanceSpec:
    """The spec of one generation; raises :class:`SettingsError` listing every problem."""
    if mode not in FRONTEND_MODES:
        raise SettingsError([f"mode must be one of {', '.join(FRONTEND_MODES)}, got {mode!r}"])
    window = as_window(window)
    if mode == "off" and window is not None:
        raise SettingsError(["mode 'off' is the plain negative prompt at every step: it takes no window "
                             "(use mode 'windowed')"])
    if mode == "windowed" and window is None:
        window = StepWindow.paper_default()
    if mode == "adaptive" and window is None:
        window = StepWindow.adaptive_default()
    return GuidanceSpec(ALIASES.get(mode, mode), guidance_scale, window=window, dns_scale=dns_scale,
                        dng=_config(dng, DNGConfig, "DNG"), sld=_config(sld, SLDConfig, "SLD"),
                        perp_neg_scale=perp_neg_scale, negative_scale=negative_scale,
                        adaptive=_config(adaptive, AdaptiveStart, "adaptive"))


def uses_negative(spec: GuidanceSpec) -> bool:
    """Whether the spec's mode reads the negative prompt (DNS and the unwindowed 'off' mode do not need one)."""
    return spec.guidance_mode().needs_negative_prompt


def expected_branches(spec: GuidanceSpec, has_negative: bool) -> tuple[str, ...]:
    """The text branches to encode before sampling (a prefetch hint, not a decision: the run's plans say what is
    evaluated, and a branch no hint named is encoded when a plan first asks for it)."""
    return tuple(b for b in spec.guidance_mode().branches() if b != "negative" or has_negative)


def mode_label(spec: GuidanceSpec) -> str:
    return spec.guidance_mode().label


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ',:\n"') else text


def a1111_parameters(prompt: str, negative: str | None, fields: dict) -> str:
    """A1111's "parameters" text: the prompt, ``Negative prompt: ...``, then ``Key: value`` pairs."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def negguide_fields(settings: dict) -> dict:
    """The negguide part of the A1111 parameters line (``NegGuide ...: value``)."""
    g = settings["guidance"]
    out = {"NegGuide mode": settings.get("mode_label", g["mode"])}
    if g.get("window"):
        out["NegGuide window"] = g["window"]["describe"]
    if "dns_scale" in g:
        out["NegGuide DNS scale"] = f"{g['dns_scale']:g}"
    if "dng" in g:
        d = g["dng"]
        for key in ("lambda0", "prior", "temperature", "offset", "p_max"):
            out[f"NegGuide {key}"] = f"{d[key]:g}"
        out["NegGuide tracker"] = settings.get("tracker") or d["tracker"]
    if "sld" in g:
        out["NegGuide SLD"] = " ".join(f"{k}={v:g}" for k, v in g["sld"].items())
    if "perp_neg_scale" in g:
        out["NegGuide Perp-Neg scale"] = f"{g['perp_neg_scale']:g}"
    if "negative_scale" in g:
        out["NegGuide negative scale"] = f"{g['negative_scale']:g}"
    if "adaptive" in g:
        out["NegGuide adaptive signal"] = g["adaptive"]["signal"]
        out["NegGuide adaptive threshold"] = f"{g['adaptive']['threshold']:g}"
    if settings.get("dnp"):
        out["NegGuide DNP captioner"] = settings["dnp"]["captioner"]
    return out
