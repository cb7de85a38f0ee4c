"""The settings of each negguide mode as ComfyUI widgets, and the core :class:`~negguide.spec.GuidanceSpec` they
make. Every check of the values is the core's (``negguide.spec``, ``negguide.configs``, ``negguide.windows``):
a bad value raises :class:`negguide.checks.SettingsError`, which ComfyUI shows on the node.

A mode's spec needs the CFG scale (the guider's ``cfg`` or, for a model patch, the sampler's) and the model's
:class:`~negguide.frames.Frame`: a window in sigmas is given in ComfyUI's own sigma units (what a ``SIGMAS``
output shows: the flow time ``t`` for SD3/Flux-type models), which the frame converts to the core's sigma.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from negguide import (
    PROBE_DIRECTIONS,
    TRACKERS,
    VARIANCES,
    AdaptiveStart,
    DNGConfig,
    Frame,
    GuidanceSpec,
    SettingsError,
    SLDConfig,
    StepWindow,
)
from negguide.configs import ADAPTIVE_SIGNALS

WINDOW_UNITS = ("steps", "fraction", "sigma")  # ComfyUI spelling -> negguide.windows units below
_CORE_UNIT = {"steps": "step", "fraction": "fraction", "sigma": "sigma"}
_COMFY_UNIT = {core: comfy for comfy, core in _CORE_UNIT.items()}
FORMS = ("2-term", "3-term")  # np: N + w (P - N);  np3: E + w (P - N)


def _float(default: float, lo: float, hi: float, step: float, tooltip: str) -> tuple:
    # round: False keeps what the user types (a prior of 0.0005) instead of rounding it to the arrows' step
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "round": False, "tooltip": tooltip})


CFG_INPUT = ("cfg", _float(7.0, 0.0, 100.0, 0.1, "Classifier-free guidance scale."), lambda v: v)


@dataclass(frozen=True)
class Mode:
    """One node family (a guider and a model patch share it). ``guider_scale``: the guider's scale widget and
    how it sets the CFG scale of the spec (a model patch takes the sampler's cfg instead)."""

    key: str  # used in node ids: NegGuide<Key>Guider / NegGuide<Key>Patch
    title: str
    summary: str  # the node's description
    core_mode: str  # the core mode it runs (the windowed family: np, or np3 by its form)
    widgets: Mapping[str, tuple]  # required settings, in display order
    optional: Mapping[str, tuple]  # advanced settings with defaults
    build: Callable[[dict, float, Frame], GuidanceSpec]  # (values, cfg scale, frame) -> spec
    guider_scale: tuple = CFG_INPUT  # (name, ComfyUI input spec, value -> cfg scale)

    @property
    def uses_negative(self) -> bool:
        """The node takes a negative conditioning when its core mode reads one (DNS: positive and empty only)."""
        return GuidanceSpec(self.core_mode).guidance_mode().reads_negative

    def spec(self, values: Mapping, cfg_scale: float, frame: Frame) -> GuidanceSpec:
        known = {k: values[k] for k in (*self.widgets, *self.optional) if k in values}
        return self.build(known, float(cfg_scale), frame)


def _window(values: dict, frame: Frame) -> StepWindow:
    unit = values["window_unit"]
    if unit not in _CORE_UNIT:
        raise SettingsError([f"window_unit must be one of {WINDOW_UNITS}, got {unit!r}"])
    start, end = float(values["window_start"]), float(values["window_end"])
    if unit == "sigma":  # ComfyUI's sigma -> the core's (k-diffusion) sigma; a flow model's t = 1 becomes inf
        start, end = (float(frame.noise_level(v, 1).sigma[0]) for v in (start, end))
    return StepWindow(start, end, _CORE_UNIT[unit])


def _windowed(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    mode = {"2-term": "np", "3-term": "np3"}.get(values["form"])
    if mode is None:
        raise SettingsError([f"form must be one of {FORMS}, got {values['form']!r}"])
    return GuidanceSpec(mode, cfg_scale=cfg, window=_window(values, frame))


def _dng(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    config = DNGConfig(lambda0=values["lambda0"], prior=values["prior"], temperature=values["temperature"],
                       offset=values["offset"], p_max=values["p_max"], tracker=values["tracker"],
                       variance=values.get("variance", "beta"), probe_pairs=int(values.get("probe_pairs", 1)),
                       probe_directions=values.get("probe_directions", "deflated"))
    return GuidanceSpec("dng", cfg_scale=cfg, dng=config)


def _adaptive(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    start = AdaptiveStart(signal=values["signal"], threshold=values["threshold"])
    return GuidanceSpec("adaptive", cfg_scale=cfg, window=_window(values, frame), adaptive=start)


def _constant_negative(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    return GuidanceSpec("np_lambda", cfg_scale=cfg, negative_scale=values["negative_scale"])


def _dns(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    return GuidanceSpec("dns", cfg_scale=cfg)  # s = cfg - 1: CFG with the prompts swapped (Desai Eq. 19)


def _sld(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    config = SLDConfig(threshold=values["threshold"], s_s=values["scale"], beta_m=values["momentum_beta"],
                       s_m=values["momentum_scale"], warmup_steps=int(values["warmup_steps"]))
    return GuidanceSpec("sld", cfg_scale=cfg, sld=config)


def _perp_neg(values: dict, cfg: float, frame: Frame) -> GuidanceSpec:
    return GuidanceSpec("perp_neg", cfg_scale=cfg, perp_neg_scale=values["neg_scale"])


_defaults_dng, _defaults_sld, _defaults_adaptive = DNGConfig(), SLDConfig(), AdaptiveStart()
_adaptive_window, _defaults_spec = StepWindow.adaptive_default(), GuidanceSpec()

_WINDOW_UNIT_TOOLTIP = ("steps: 1-based, both ends included. fraction: of the pass, [start, end). sigma: ComfyUI's "
                        "noise level (the SIGMAS values), start >= end, both included.")

WINDOWED = Mode(
    "Windowed", "Windowed Negative Prompt",
    "The negative prompt acts only on the steps of a window (Ban et al. 2024: steps 5-15 of 30 remove an object "
    "and keep the composition); on every other step the empty prompt is the unconditional branch. Same model rows "
    "as plain CFG.",
    "np",
    {
        "form": (list(FORMS), {"default": "2-term", "tooltip": "2-term: negative + cfg (positive - negative), what "
                               "ComfyUI's CFG does with a negative prompt. 3-term: empty + cfg (positive - negative) "
                               "(Desai & Vasconcelos Eq. 4; one extra row per image inside the window)."}),
        "window_unit": (list(WINDOW_UNITS), {"default": "steps", "tooltip": _WINDOW_UNIT_TOOLTIP}),
        "window_start": _float(5.0, 0.0, 10000.0, 0.01, "First step (or fraction, or largest sigma) where the "
                               "negative prompt acts."),
        "window_end": _float(15.0, 0.0, 10000.0, 0.01, "Last step (or end fraction, or smallest sigma). A window "
                             "that ends before it starts is empty: exactly an empty negative prompt."),
    },
    {},
    _windowed,
)

DNG = Mode(
    "DNG", "Dynamic Negative Guidance",
    "Koulischer et al. 2025: the negative scale follows the tracked posterior p that the image shows the negative "
    "prompt, lambda = lambda0 p / (1 - p), per image. Ancestral/SDE samplers get the transition tracker (+1 row per "
    "image), deterministic ones the gated probability-flow tracker (+1 row per image, and 2 probe rows for an image "
    "on the steps where its posterior is undecided).",
    "dng",
    {
        "lambda0": _float(_defaults_dng.lambda0, 0.0, 1000.0, 0.1, "Guidance scale at p = 1/2; 0 = no negative "
                          "guidance and no extra rows (an empty negative prompt)."),
        "prior": _float(_defaults_dng.prior, 1e-6, 0.999, 0.001, "Prior probability p0 of the negative concept."),
        "temperature": _float(_defaults_dng.temperature, 0.001, 10.0, 0.01, "Posterior temperature (paper: 0.2-0.3)."),
        "offset": _float(_defaults_dng.offset, -1.0, 1.0, 0.0001, "Posterior offset (paper: 0.002-0.004)."),
        "p_max": _float(_defaults_dng.p_max, 0.001, 0.999, 0.01, "Upper clamp of p: lambda <= lambda0 p_max / "
                        "(1 - p_max) (0.8: 4 lambda0)."),
        "tracker": (list(TRACKERS), {"default": "auto", "tooltip": "auto: transition likelihood where the sampler "
                                     "injects noise, flow-gated where it does not (probes only while an image's "
                                     "posterior is undecided). flow-moment: 1 extra row on any sampler (weaker in "
                                     "high dimension)."}),
    },
    {
        "probe_pairs": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": "Hutchinson probe pairs of the "
                                "flow-hutchinson and flow-gated trackers (2 rows per image each, at a step's first "
                                "evaluation)."}),
        "probe_directions": (list(PROBE_DIRECTIONS), {"default": "deflated", "tooltip": "Directions of those "
                             "probes: deflated (each image's dominant directions taken exactly: lower spread at "
                             "the same cost) or rademacher (random signs)."}),
        "variance": (list(VARIANCES), {"default": "beta", "tooltip": "Transition tracker's step variance: beta "
                                       "(paper Alg. 2), beta_tilde (authors' code), sampler (the sampler's eta)."}),
    },
    _dng,
)

DNS = Mode(
    "DNS", "Diffusion-Negative Sample",
    "Desai & Vasconcelos 2024, Eq. 19: samples what the model considers least like the prompt, "
    "empty + s (empty - positive). Look at it to find what to put in the negative prompt. Same rows as plain CFG.",
    "dns",
    {},
    {},
    _dns,
    # CFG with the prompts swapped at scale w is DNS at s = w - 1: the guider asks for s itself
    ("dns_scale", _float(6.0, 0.0, 99.0, 0.1, "DNS scale s (the same as CFG s + 1 with the prompts swapped)."),
     lambda s: s + 1.0),
)

SLD = Mode(
    "SLD", "Safe Latent Diffusion",
    "Schramowski et al. 2023, the DNG paper's baseline: a thresholded, momentum-accelerated push away from the "
    "negative prompt in eps units. Not defined for rectified-flow models (SD3, Flux). +1 row per image.",
    "sld",
    {
        "threshold": _float(_defaults_sld.threshold, -100.0, 100.0, 0.001, "SLD threshold lambda (eps units)."),
        "scale": _float(_defaults_sld.s_s, 0.0, 10000.0, 0.1, "SLD guidance scale s_S."),
        "momentum_scale": _float(_defaults_sld.s_m, 0.0, 100.0, 0.01, "Momentum scale s_m."),
        "momentum_beta": _float(_defaults_sld.beta_m, 0.0, 0.999, 0.01, "Momentum decay beta_m, in [0, 1)."),
        "warmup_steps": ("INT", {"default": _defaults_sld.warmup_steps, "min": 0, "max": 10000,
                                 "tooltip": "Steps before SLD acts."}),
    },
    {},
    _sld,
)

PERP_NEG = Mode(
    "PerpNeg", "Perp-Neg",
    "Armandpour et al. 2023: only the part of the negative direction perpendicular to the positive one is "
    "subtracted, per image (ComfyUI's own PerpNegGuider projects over the whole batch). +1 row per image.",
    "perp_neg",
    {"neg_scale": _float(1.0, 0.0, 100.0, 0.01, "Scale of the perpendicular negative component.")},
    {},
    _perp_neg,
)

ADAPTIVE = Mode(
    "Adaptive", "Adaptive Window",
    "The negative prompt of a window that starts per image when a signal measured at each step fires (Ban et al. "
    "2024: before its critical step a negative disturbs the layout). Until an image has started, the negative "
    "branch runs beside CFG's two rows to measure the signal (+1 row per image); once every image has started, the "
    "rows are a fixed window's. Signal 'none' starts at the window's start: the Windowed node (2-term), bit for bit.",
    "adaptive",
    {
        "window_unit": (list(WINDOW_UNITS), {"default": _COMFY_UNIT[_adaptive_window.unit],
                                             "tooltip": _WINDOW_UNIT_TOOLTIP}),
        "window_start": _float(_adaptive_window.start, 0.0, 10000.0, 0.01, "The earliest start: the signal is read "
                               "from here on (step, fraction or largest sigma)."),
        "window_end": _float(_adaptive_window.end, 0.0, 10000.0, 0.01, "Where the negative prompt stops, whenever "
                             "it started (last step, end fraction or smallest sigma)."),
        "signal": (list(ADAPTIVE_SIGNALS), {"default": _defaults_adaptive.signal, "tooltip": "alignment: an image "
                   "starts when cos(negative - empty, positive - empty) >= threshold. gap: when |negative - "
                   "positive| has fallen to threshold x its running peak. none: at the window's start."}),
        "threshold": _float(_defaults_adaptive.threshold, -1.0, 1.0, 0.01, "The signal's level: a cosine in [-1, 1] "
                            "for alignment, a fraction in (0, 1] of the peak for gap."),
    },
    {},
    _adaptive,
)

CONSTANT_NEGATIVE = Mode(
    "ConstantNegative", "Constant Negative Guidance",
    "empty + cfg (positive - empty) - lambda (negative - positive) at a fixed lambda: the DNG paper's negative "
    "prompting baseline, DNG's rule without its posterior (lambda 0: CFG with an empty negative). +1 row per image.",
    "np_lambda",
    {"negative_scale": _float(_defaults_spec.negative_scale, 0.0, 100.0, 0.01, "The constant lambda.")},
    {},
    _constant_negative,
)

MODES = (WINDOWED, DNG, DNS, SLD, PERP_NEG, ADAPTIVE, CONSTANT_NEGATIVE)
