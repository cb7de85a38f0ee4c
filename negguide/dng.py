"""Dynamic Negative Guidance for one generation: the object a backend adapter drives.

An adapter creates one :class:`DynamicNegativeGuidance` per batch (and per hires pass), then at the first
model evaluation of every sampler step calls :meth:`DynamicNegativeGuidance.step` with the state, its noise
level and the two UNGUIDED denoised predictions (the reference branch: unconditional for class removal,
positive prompt for text-to-image; and the negative/forbidden branch). It returns the per-image scale
``lambda = lambda0 p / (1 - p)`` for this step, to use with :func:`negguide.guidance.dng` or
:func:`negguide.guidance.dng_text`. A second evaluation inside the same step (Heun, DPM2, DPM++ 2S/SDE)
reuses :meth:`current_scale` instead of calling ``step`` again.

Ordering (paper Algorithm 1): the posterior is updated from the state the sampler actually reached before
the guidance of the step is computed, so the scale for step t comes from the posterior after step t+1.
Predictions in eps at a VP timestep are converted by the adapter with :mod:`negguide.predictions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .posterior import VARIANCES, FlowTracker, PosteriorConfig, TransitionTracker

TRACKERS = ("auto", "transition", "flow-hutchinson", "flow-moment")


@dataclass(frozen=True)
class DNGConfig:
    """DNG hyper-parameters. Defaults follow the paper's text-to-image settings (App. D, Table 3: prior 0.01,
    temperature 0.2-0.3, offset 0.002-0.004) with ``p_max = 0.8`` as in the authors' example run, which bounds
    lambda at 4 lambda0."""

    scale: float = 5.0  # lambda0
    prior: float = 0.01
    temperature: float = 0.2
    offset: float = 0.003
    p_min: float = 1e-6
    p_max: float = 0.8
    tracker: str = "auto"
    variance: str = "beta"  # transition tracker: "beta" (paper Alg. 2), "beta_tilde" (authors' code), "sampler"
    probes: int = 1  # Hutchinson probes of the flow tracker: 2 extra model rows per image each
    posterior: PosteriorConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"DNG scale lambda0 must be a finite number >= 0, got {self.scale}")
        if self.tracker not in TRACKERS:
            raise ValueError(f"DNG tracker must be one of {TRACKERS}, got {self.tracker!r}")
        if self.variance not in VARIANCES:
            raise ValueError(f"DNG transition variance must be one of {VARIANCES}, got {self.variance!r}")
        if not 1 <= self.probes <= 16:
            raise ValueError(f"DNG probes must be between 1 and 16, got {self.probes}")
        object.__setattr__(self, "posterior", PosteriorConfig(
            prior=self.prior, temperature=self.temperature, offset=self.offset, p_min=self.p_min, p_max=self.p_max))

    def resolved_tracker(self, stochastic_sampler: bool) -> str:
        """``auto``: the transition likelihood where the sampler injects noise, else the flow tracker with
        Hutchinson probes (the best measured deterministic tracker, see the README's tracking table)."""
        if self.tracker != "auto":
            return self.tracker
        return "transition" if stochastic_sampler else "flow-hutchinson"

    def rows_per_image(self, stochastic_sampler: bool) -> int:
        """Model rows per image and step beyond plain CFG's two: the negative branch, plus two per probe."""
        return 1 + (2 * self.probes if self.resolved_tracker(stochastic_sampler) == "flow-hutchinson" else 0)

    def max_scale(self) -> float:
        return self.scale * self.p_max / (1 - self.p_max)


def describe_tracker(config: DNGConfig, stochastic_sampler: bool) -> str:
    """One line for a UI: which tracker runs and what it costs in model rows per image and step."""
    name = config.resolved_tracker(stochastic_sampler)
    rows = config.rows_per_image(stochastic_sampler)
    if name == "transition":
        return f"transition likelihood (paper Alg. 2): +{rows} row per image (the negative branch)"
    if name == "flow-moment":
        return f"probability-flow, moment closure: +{rows} row per image (the negative branch)"
    return (f"probability-flow, Hutchinson x{config.probes}: +{rows} rows per image "
            f"(negative branch + {config.probes} probe pair{'s' if config.probes > 1 else ''})")


class DynamicNegativeGuidance:
    """Per-image DNG state for one batch: posterior tracker, current scale and the per-step record."""

    def __init__(self, config: DNGConfig, batch_size: int, stochastic_sampler: bool, eta: float = 1.0,
                 device=None, generator: torch.Generator | None = None):
        self.config = config
        self.tracker_name = config.resolved_tracker(stochastic_sampler)
        if self.tracker_name == "transition":
            variance = config.variance
            if variance == "sampler" and eta == 0.0:
                variance = "beta"
            self.tracker = TransitionTracker(config.posterior, batch_size, device, variance=variance,
                                             eta=eta if eta > 0 else 1.0)
        elif self.tracker_name == "flow-moment":
            self.tracker = FlowTracker(config.posterior, batch_size, device, divergence="moment")
        else:
            self.tracker = FlowTracker(config.posterior, batch_size, device, divergence="hutchinson",
                                       probes=config.probes, generator=generator)
        self._records: list[tuple] = []  # tensors stay on device: no host sync inside the sampling loop
        self._scale = self._scale_from_posterior()

    @property
    def extra_rows_per_image(self) -> int:
        """Model rows per image beyond the reference and negative branches (Hutchinson probe pairs)."""
        return self.tracker.extra_rows_per_image

    def probe_points(self, x: torch.Tensor, sigma):
        """Where to evaluate both branches for the Hutchinson estimate: ``(directions, points [K, B, ...])``."""
        return self.tracker.probe_points(x, sigma)

    def _scale_from_posterior(self) -> torch.Tensor:
        return self.config.scale * self.tracker.odds()

    def current_scale(self) -> torch.Tensor:
        """Per-image lambda of the current step (float64, ``[B]``)."""
        return self._scale

    def step(self, step_index: int, x: torch.Tensor, sigma, denoised_ref: torch.Tensor,
             denoised_neg: torch.Tensor, probes=None) -> torch.Tensor:
        """Update the posterior with this step's evaluation and return lambda for this step."""
        if isinstance(self.tracker, FlowTracker) and self.tracker.divergence == "hutchinson":
            self.tracker.observe(x, sigma, denoised_ref, denoised_neg, probes=probes)
        else:
            self.tracker.observe(x, sigma, denoised_ref, denoised_neg)
        self._scale = self._scale_from_posterior()
        sigma0 = sigma.detach().reshape(-1)[0] if torch.is_tensor(sigma) else sigma
        self._records.append((int(step_index), sigma0, self.tracker.posterior(), self._scale))
        return self._scale

    @property
    def records(self) -> list[dict]:
        """Per step: ``{"step", "sigma", "p": [per image], "lambda": [per image]}`` (converted on read)."""
        return [{"step": i, "sigma": float(s), "p": p.tolist(), "lambda": lam.tolist()}
                for i, s, p, lam in self._records]

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> torch.Tensor:
        """Account for the last step (no evaluation follows it); returns the final posterior per image."""
        self.tracker.finish(x, sigma_final)
        return self.tracker.posterior()
