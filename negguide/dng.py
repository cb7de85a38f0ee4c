"""Dynamic Negative Guidance (Koulischer et al. 2025): settings and the per-batch posterior controller.

:class:`DynamicNegativeGuidance` keeps, per image, the posterior tracker, the current ``lambda = lambda0 p /
(1 - p)`` and the per-step record. :class:`negguide.run.GuidanceRun` drives it (front-ends never call it
directly): at the first model evaluation of every sampler step it calls :meth:`DynamicNegativeGuidance.observe`
with the state, its noise level and the two UNGUIDED denoised predictions, all in the k-diffusion frame (the
reference branch: unconditional for class removal, positive prompt for text-to-image; and the
negative/forbidden branch); a second evaluation of the same step reuses :meth:`current_lambda`.

Ordering (paper Algorithm 1): the posterior is updated from the state the sampler actually reached before
the guidance of the step is computed, so lambda for step t comes from the posterior after step t+1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checks import is_finite_number, raise_problems
from .posterior import VARIANCES, FlowTracker, PosteriorConfig, TransitionTracker
from .samplers import SamplerInfo

TRACKERS = ("auto", "transition", "flow-hutchinson", "flow-moment")
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
        ])
        object.__setattr__(self, "posterior", PosteriorConfig(
            prior=self.prior, temperature=self.temperature, offset=self.offset, p_min=min(self.p_min, self.prior),
            p_max=self.p_max))

    @property
    def active(self) -> bool:
        """False at lambda0 = 0: the negative branch then changes nothing and is not evaluated."""
        return self.lambda0 > 0

    def resolved_tracker(self, sampler: SamplerInfo) -> str:
        """``auto``: the transition likelihood where the sampler injects noise, else the flow tracker with
        Hutchinson probes (the best measured deterministic tracker, see the README's tracking table)."""
        if self.tracker != "auto":
            return self.tracker
        return "transition" if sampler.injects_noise else "flow-hutchinson"

    def extra_rows_per_image(self, sampler: SamplerInfo) -> int:
        """Model rows per image and step beyond plain CFG's two: the negative branch, plus two per probe pair."""
        if not self.active:
            return 0
        return 1 + (2 * self.probe_pairs if self.resolved_tracker(sampler) == "flow-hutchinson" else 0)

    def max_lambda(self) -> float:
        return self.lambda0 * self.p_max / (1 - self.p_max)


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
    return (f"probability-flow, Hutchinson x{pairs}: +{rows} rows per image "
            f"(negative branch + {pairs} probe pair{'s' if pairs > 1 else ''})")


RECORDS = ("per_image", "mean", "none")


class DynamicNegativeGuidance:
    """Per-image DNG state for one batch: posterior tracker, current lambda and the per-step record.

    ``record``: ``"per_image"`` keeps p and lambda of every image per step (plots), ``"mean"`` only their
    batch means (large offline batches: 50k images x 1000 steps would be ~800 MB per image), ``"none"``.
    ``tracker``: a ready tracker object to use instead of the configured one (exact oracles in tests and
    the toy study); it needs ``observe``, ``finish``, ``posterior``, ``odds``, ``extra_rows_per_image``."""

    def __init__(self, config: DNGConfig, batch_size: int, sampler: SamplerInfo, device=None,
                 generator: torch.Generator | None = None, record: str = "per_image", tracker=None):
        if record not in RECORDS:
            raise ValueError(f"record must be one of {RECORDS}, got {record!r}")
        self.config = config
        self.tracker_name = config.resolved_tracker(sampler) if tracker is None else tracker.name
        if tracker is not None:
            self.tracker = tracker
        elif self.tracker_name == "transition":
            variance = config.variance
            if variance == "sampler" and not sampler.injects_noise:
                variance = "beta"  # a deterministic step injects nothing to compare with: the paper's choice
            self.tracker = TransitionTracker(config.posterior, batch_size, device, variance=variance,
                                             eta=min(sampler.eta, 1.0) if sampler.injects_noise else 1.0)
        elif self.tracker_name == "flow-moment":
            self.tracker = FlowTracker(config.posterior, batch_size, device, divergence="moment")
        else:
            self.tracker = FlowTracker(config.posterior, batch_size, device, divergence="hutchinson",
                                       probe_pairs=config.probe_pairs, generator=generator)
        self.record = record
        self._records: list[tuple] = []  # tensors stay on device: no host sync inside the sampling loop
        self._lambda = self._lambda_from_posterior()

    @property
    def probe_pairs(self) -> int:
        """Hutchinson probe pairs the tracker wants at a step's first evaluation (0: none)."""
        return self.tracker.extra_rows_per_image // 2

    def probe_points(self, x_ve: torch.Tensor, sigma):
        """Where to evaluate both branches for the Hutchinson estimate: ``(directions, points [K, B, ...])``."""
        return self.tracker.probe_points(x_ve, sigma)

    def _lambda_from_posterior(self) -> torch.Tensor:
        return self.config.lambda0 * self.tracker.odds()

    def current_lambda(self) -> torch.Tensor:
        """Per-image lambda of the current step (float64, ``[B]``)."""
        return self._lambda

    def observe(self, step: int, x_ve: torch.Tensor, sigma, denoised_ref: torch.Tensor,
                denoised_neg: torch.Tensor, probe_predictions=None) -> torch.Tensor:
        """Update the posterior with this step's evaluation and return lambda for this step.

        ``probe_predictions = (directions, D_ref at the probe points, D_neg at the points)`` for Hutchinson."""
        if self.probe_pairs:
            self.tracker.observe(x_ve, sigma, denoised_ref, denoised_neg, probe_predictions=probe_predictions)
        else:
            self.tracker.observe(x_ve, sigma, denoised_ref, denoised_neg)
        self._lambda = self._lambda_from_posterior()
        if self.record != "none":
            sigma0 = sigma.detach().reshape(-1)[0] if torch.is_tensor(sigma) else sigma
            p, lam = self.tracker.posterior(), self._lambda
            if self.record == "mean":
                p, lam = p.mean(), lam.mean()
            self._records.append((int(step), sigma0, p, lam))
        return self._lambda

    @property
    def records(self) -> list[dict]:
        """Per step: ``{"step", "sigma", "p", "lambda"}``, p and lambda per image (lists) or their batch means
        (floats), converted on read."""
        return [{"step": i, "sigma": float(s), "p": p.tolist(), "lambda": lam.tolist()}
                for i, s, p, lam in self._records]

    def finish(self, x_ve: torch.Tensor, sigma_final=0.0) -> torch.Tensor:
        """Account for the last step (no evaluation follows it); returns the final posterior per image."""
        self.tracker.finish(x_ve, sigma_final)
        return self.tracker.posterior()

