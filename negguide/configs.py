"""The settings of the core's guidance methods: plain dataclasses, validated on construction, no torch.

Front-ends build these from their own inputs and show :class:`negguide.checks.SettingsError` problems to the
user (the WebUI panel validates with them while the user types, in a process without torch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .checks import is_finite_number, raise_problems
from .samplers import SamplerInfo

VARIANCES = ("beta", "beta_tilde", "sampler")


@dataclass(frozen=True)
class PosteriorConfig:
    """What every DNG posterior tracker shares (see :mod:`negguide.posterior`)."""

    prior: float = 0.01
    temperature: float = 1.0
    offset: float = 0.0
    p_min: float = 1e-6
    p_max: float = 0.99

    def __post_init__(self):
        raise_problems([
            (0.0 < self.p_min < 1.0, f"p_min must be in (0, 1), got {self.p_min}"),
            (0.0 < self.p_max < 1.0, f"p_max must be in (0, 1) (p/(1-p) is infinite at 1), got {self.p_max}"),
            (self.p_min <= self.p_max, f"p_min ({self.p_min}) must not exceed p_max ({self.p_max})"),
            (0.0 < self.prior < 1.0, f"prior must be in (0, 1), got {self.prior}"),
            (math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be a finite number >= 0, got {self.temperature}"),
            (math.isfinite(self.offset), f"offset must be finite, got {self.offset}"),
        ])


@dataclass(frozen=True)
class SLDConfig:
    """Safe Latent Diffusion (see :mod:`negguide.sld`); defaults are the DNG paper's (App. D.2)."""

    threshold: float = 0.04
    s_s: float = 100.0
    beta_m: float = 0.2
    s_m: float = 0.1
    warmup_steps: int = 0

    def __post_init__(self):
        raise_problems([
            (all(is_finite_number(v) for v in (self.threshold, self.s_s, self.beta_m, self.s_m)),
             "SLD threshold, s_s, beta_m and s_m must be finite numbers"),
            (0.0 <= self.beta_m < 1.0, f"SLD momentum decay beta_m must be in [0, 1), got {self.beta_m}"),
            (self.s_s >= 0 and self.s_m >= 0, f"SLD scales s_s and s_m must be >= 0, got {self.s_s}, {self.s_m}"),
            (self.warmup_steps >= 0, f"SLD warmup_steps must be >= 0, got {self.warmup_steps}"),
        ])


ADAPTIVE_SIGNALS = ("alignment", "gap", "none")


@dataclass(frozen=True)
class AdaptiveStart:
    """When the adaptive window's negative prompt starts, per image (see :mod:`negguide.modes.adaptive_window`).

    ``signal``: ``alignment`` starts an image when ``cos(eps_N - eps_E, eps_P - eps_E) >= threshold`` (the negative's
    direction has lined up with the prompt's: what it names is part of what the prompt is making); ``gap`` when
    ``|eps_N - eps_P|`` has fallen to ``threshold`` times its running peak; ``none`` at the window's start (a fixed
    window, evaluated as one). ``threshold``: the signal's level (alignment: a cosine in [-1, 1]; gap: a fraction
    in (0, 1])."""

    signal: str = "alignment"
    threshold: float = 0.5

    def __post_init__(self):
        raise_problems([
            (self.signal in ADAPTIVE_SIGNALS,
             f"adaptive signal must be one of {ADAPTIVE_SIGNALS}, got {self.signal!r}"),
            (is_finite_number(self.threshold), f"adaptive threshold must be a finite number, got {self.threshold!r}"),
            (self.signal != "alignment" or -1 <= self.threshold <= 1,
             f"the alignment threshold is a cosine in [-1, 1], got {self.threshold}"),
            (self.signal != "gap" or 0 < self.threshold <= 1,
             f"the gap threshold is a fraction of the running peak in (0, 1], got {self.threshold}"),
        ])


@dataclass(frozen=True)
class ProbeGate:
    """Where and how the gated flow tracker spends Hutchinson probes (see :class:`negguide.posterior.FlowTracker`).

    An image probes at a step when the step is on its schedule (every ``every``-th step), its posterior is
    undecided (``p_low <= p <= p_high``) and has moved from the prior (``|log p - log p0| >= min_move``): the band
    of noise levels where the posterior is being decided and the within-class part of the divergence matters.
    Elsewhere the moment closure (between-class part only) is exact enough and costs nothing.

    A probe estimates the within-class part per unit ``(1 - p)``, ``u``; it is averaged with the image's previous
    estimate carried to this noise level on a ``sigma_then / sigma`` law (the estimate's variance, not its bias,
    limits a single probe), and held the same way on steps without a probe for at most ``hold_efolds`` e-folds of
    sigma (holding longer carries it into the decided region: false alarms). The average weighs each estimate by
    its inverse variance: dividing by ``1 - p`` spreads an estimate as ``1 / (1 - p)`` at its probe's ``p``, so
    the past gets ``smoothing (1 - p_then)^2 / (smoothing (1 - p_then)^2 + (1 - smoothing) (1 - p)^2)``
    (``smoothing`` itself where both probes saw the same ``p``). With a fixed weight, one probe taken near
    ``p_high`` and carried to ``p ~ 0.5`` pulled forbidden images down (misses: found 80-92% on the worst
    DDIM-50 configurations of the toy, 92-100% with these weights).
    ``control_variate`` removes the fluctuation of the known rank-one between-class part,
    ``-odds (Delta . v)^2 / sigma^2``, from each probe (unbiased for any odds; it pays where the gate is open, the
    posterior having moved there).

    Above ``p_high`` the closure's between-class term is dropped. For an image that is forbidden it is
    ``p (1 - p) |D_neg - D_other|^2``, which vanishes as ``p -> 1``: dropping it costs ``O(1 - p)``. For a kept
    image that one probe pushed past ``p_high`` it is ``odds |Delta|^2`` with ``Delta`` at full size and the
    wrong odds (up to ``1 / (1 - p_max)``): a positive feedback, ``d log p`` growing with ``p`` itself, that held
    such false alarms at ``p_max`` (the toy's 96 held-out configurations: 0.9% false alarms on average, 5.0% at
    worst; with the term dropped 0.1% and 2.2%). Without it the image's ``log p`` follows the evidence down
    again; no cap short of zero did (odds capped at 1 or 10: unchanged)."""

    every: int = 1
    p_low: float = 1e-3
    p_high: float = 0.999
    min_move: float = 0.2
    hold_efolds: float = 1.0
    smoothing: float = 0.5
    control_variate: bool = True

    def __post_init__(self):
        raise_problems([
            (isinstance(self.every, int) and self.every >= 1,
             f"the probe gate's 'every' must be a whole number >= 1, got {self.every!r}"),
            (all(is_finite_number(v) for v in (self.p_low, self.p_high, self.min_move, self.hold_efolds,
                                                self.smoothing)), "the probe gate's settings must be numbers"),
            (0.0 <= self.p_low <= self.p_high <= 1.0, f"probe gate needs 0 <= p_low <= p_high <= 1, got "
                                                     f"{self.p_low}, {self.p_high}"),
            (self.min_move >= 0 and self.hold_efolds >= 0, "the probe gate's min_move and hold_efolds must be >= 0"),
            (0.0 <= self.smoothing < 1.0, f"the probe gate's smoothing must be in [0, 1), got {self.smoothing}"),
        ])


TRACKERS = ("auto", "transition", "flow-hutchinson", "flow-moment", "flow-gated")
PROBE_DIRECTIONS = ("deflated", "rademacher")  # see negguide.probes
FLOW_STARTS = ("prior", "evidence")
# DNGConfig's and the flow tracker's defaults: "deflated" (each image's dominant directions exact), "evidence"
# (the first evaluation's large-sigma evidence)
DEFAULT_PROBE_DIRECTIONS, DEFAULT_FLOW_START = "deflated", "evidence"
# A flow-tracker step that shrinks sigma more than fivefold takes the left-point rule: DDIM's last step on the linear
# schedule (0.13 at 50 steps, 0.05 at 20), not SD's at 30-50 (0.23-0.29). docs/dng-tracking.md has the measurements.
DEFAULT_MIN_STEP_RATIO = 0.2
MAX_LAMBDA0 = 1000.0  # beyond this lambda only saturates the prediction's range


@dataclass(frozen=True)
class DNGConfig:
    """DNG hyper-parameters. Defaults follow the paper's text-to-image settings (App. D, Table 3: prior 0.01,
    temperature 0.2-0.3, offset 0.002-0.004) with ``p_max = 0.8`` as in the authors' example run, which bounds
    lambda at 4 lambda0. ``lambda0 = 0`` is valid: no negative guidance at all (the baseline of a sweep).
    The posterior's lower clamp is ``min(p_min, prior)`` so that the prior itself is never clamped."""

    lambda0: float = 5.0
    prior: float = 0.01
    temperature: float = 0.2
    offset: float = 0.003
    p_min: float = 1e-6
    p_max: float = 0.8
    tracker: str = "auto"
    variance: str = "beta"  # transition tracker: "beta" (paper Alg. 2), "beta_tilde" (authors' code), "sampler"
    probe_pairs: int = 1  # Hutchinson probes of the flow tracker: 2 extra model rows per image each
    probe_directions: str = DEFAULT_PROBE_DIRECTIONS  # or "rademacher"
    gate: ProbeGate = field(default_factory=ProbeGate)  # flow-gated: where and when images probe
    flow_start: str = DEFAULT_FLOW_START  # flow trackers: or "prior"
    min_step_ratio: float = DEFAULT_MIN_STEP_RATIO  # flow trackers: left-point rule where sigma_next < ratio * sigma
    posterior: PosteriorConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        numbers = ("lambda0", "prior", "temperature", "offset", "p_min", "p_max")
        raise_problems([(is_finite_number(getattr(self, n)), f"{n} must be a number, got {getattr(self, n)!r}")
                        for n in numbers])
        raise_problems([
            (0.0 <= self.lambda0 <= MAX_LAMBDA0, f"lambda0 must be in [0, {MAX_LAMBDA0:g}], got {self.lambda0:g}"),
            (0.0 < self.prior < 1.0, f"prior must be strictly between 0 and 1, got {self.prior:g}"),
            (0.0 < self.temperature <= 10.0, f"temperature must be in (0, 10], got {self.temperature:g}"),
            (-1.0 <= self.offset <= 1.0, f"offset must be in [-1, 1], got {self.offset:g}"),
            (0.0 < self.p_max < 1.0, f"p_max must be strictly between 0 and 1, got {self.p_max:g}"),
            (0.0 < self.p_min < 1.0, f"p_min must be strictly between 0 and 1, got {self.p_min:g}"),
            (not (0.0 < self.prior < 1.0 and 0.0 < self.p_max < 1.0) or self.prior <= self.p_max,
             f"prior ({self.prior:g}) is above p_max ({self.p_max:g})"),
            (self.tracker in TRACKERS, f"tracker must be one of {TRACKERS}, got {self.tracker!r}"),
            (self.variance in VARIANCES, f"transition variance must be one of {VARIANCES}, got {self.variance!r}"),
            (isinstance(self.probe_pairs, int) and 1 <= self.probe_pairs <= 16,
             f"probe_pairs must be a whole number from 1 to 16, got {self.probe_pairs!r}"),
            (self.probe_directions in PROBE_DIRECTIONS,
             f"probe_directions must be one of {PROBE_DIRECTIONS}, got {self.probe_directions!r}"),
            (isinstance(self.gate, ProbeGate), f"gate must be a ProbeGate, got {type(self.gate).__name__}"),
            (self.flow_start in FLOW_STARTS, f"flow_start must be one of {FLOW_STARTS}, got {self.flow_start!r}"),
            (is_finite_number(self.min_step_ratio) and 0.0 <= self.min_step_ratio < 1.0,
             f"min_step_ratio must be in [0, 1), got {self.min_step_ratio!r}"),
        ])
        object.__setattr__(self, "posterior", PosteriorConfig(
            prior=self.prior, temperature=self.temperature, offset=self.offset, p_min=min(self.p_min, self.prior),
            p_max=self.p_max))

    @property
    def active(self) -> bool:
        """False at lambda0 = 0: the negative branch then changes nothing and is not evaluated."""
        return self.lambda0 > 0

    def resolved_tracker(self, sampler: SamplerInfo) -> str:
        """``auto``: the transition likelihood where the sampler injects noise, else the gated flow tracker with
        deflated probes: on the toy's 64-D/256-D mixtures as accurate on average as one probe pair at every step
        (0.011) at under a third of its probe rows, with 1% false alarms where the pair has none
        (docs/dng-tracking.md)."""
        if self.tracker != "auto":
            return self.tracker
        return "transition" if sampler.injects_noise else "flow-gated"

    def extra_rows_per_image(self, sampler: SamplerInfo) -> int:
        """Model rows per image and step beyond plain CFG's two, at most: the negative branch, plus two per probe
        pair (the gated tracker probes only some images on some steps: its average is measured per run)."""
        if not self.active:
            return 0
        return 1 + (2 * self.probe_pairs if self.probing(sampler) else 0)

    def probing(self, sampler: SamplerInfo) -> bool:
        """Whether the tracker it runs on ``sampler`` evaluates Hutchinson probe rows (at states of its own)."""
        return self.resolved_tracker(sampler) in ("flow-hutchinson", "flow-gated")


def describe_tracker(config: DNGConfig, sampler: SamplerInfo) -> str:
    """One line for a UI: which tracker runs and what it costs in model rows per image and step."""
    if not config.active:
        return "lambda0 = 0: no negative guidance, no extra rows"
    name = config.resolved_tracker(sampler)
    rows = config.extra_rows_per_image(sampler)
    if name == "transition":
        return f"transition likelihood (paper Alg. 2): +{rows} row per image (the negative branch)"
    if name == "flow-moment":
        return f"probability-flow, moment closure: +{rows} row per image (the negative branch)"
    pairs = config.probe_pairs
    plural = "s" if pairs > 1 else ""
    if name == "flow-gated":
        cadence = "" if config.gate.every == 1 else f", at most every {config.gate.every} steps"
        return (f"probability-flow, gated Hutchinson x{pairs}: +1 row per image (the negative branch), and "
                f"{2 * pairs} probe rows per image on the steps where its posterior is undecided{cadence}")
    return (f"probability-flow, Hutchinson x{pairs}: +{rows} rows per image "
            f"(negative branch + {pairs} probe pair{plural})")


def config_to_dict(config) -> dict:
    """A settings dataclass (or a window) as a dict of its init fields, nested settings (DNG's probe gate)
    included: JSON-serialisable."""
    out = {}
    for f in dataclasses.fields(config):
        if f.init:
            value = getattr(config, f.name)
            out[f.name] = config_to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def config_from_dict(cls, data: Mapping):
    """The inverse of :func:`config_to_dict` for ``DNGConfig``, ``SLDConfig``, ``AdaptiveStart`` or ``ProbeGate``
    (unknown keys raise TypeError, bad values :class:`~negguide.checks.SettingsError`)."""
    data = dict(data)
    if isinstance(data.get("gate"), Mapping):  # DNG's probe gate, given as a dict too
        data["gate"] = ProbeGate(**data["gate"])
    return cls(**data)
