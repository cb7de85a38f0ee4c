"""Dynamic Negative Guidance (Koulischer et al. 2025): the per-batch posterior controller.

:class:`DynamicNegativeGuidance` keeps, per image, the posterior tracker, the current ``lambda = lambda0 p /
(1 - p)`` and the per-step record. The DNG mode (:mod:`negguide.modes.dynamic_negative`) of a
:class:`negguide.run.GuidanceRun` drives it (front-ends never call it directly): at the first model evaluation of
every sampler step it calls :meth:`DynamicNegativeGuidance.observe` with the state, its noise level and the two
UNGUIDED denoised predictions, all in the k-diffusion frame (the reference branch: unconditional for class
removal, positive prompt for text-to-image; and the negative/forbidden branch); a second evaluation of the same
step reuses :meth:`current_lambda`.

Ordering (paper Algorithm 1): the posterior is updated from the state the sampler actually reached before
the guidance of the step is computed, so lambda for step t comes from the posterior after step t+1.
"""

from __future__ import annotations

import torch

from .configs import DNGConfig
from .posterior import PosteriorTracker
from .probes import ProbeRequest
from .samplers import SamplerInfo
from .trackers import make_tracker

RECORDS = ("per_image", "mean", "none")


class DynamicNegativeGuidance:
    """Per-image DNG state for one batch: posterior tracker, current lambda and the per-step record.

    ``record``: ``"per_image"`` keeps p and lambda of every image per step (plots), ``"mean"`` only their
    batch means (large offline batches: 50k images x 1000 steps would be ~800 MB per image), ``"none"``.
    ``tracker``: a ready :class:`~negguide.posterior.PosteriorTracker` to use instead of the configured one (exact
    oracles in tests and the toy study)."""

    def __init__(self, config: DNGConfig, batch_size: int, sampler: SamplerInfo, device=None,
                 generator: torch.Generator | list[torch.Generator] | None = None, record: str = "per_image",
                 tracker: PosteriorTracker | None = None):
        if record not in RECORDS:
            raise ValueError(f"record must be one of {RECORDS}, got {record!r}")
        self.config = config
        self.tracker = tracker if tracker is not None else make_tracker(config, sampler, batch_size, device,
                                                                        generator)
        self.record = record
        self._records: list[tuple] = []  # tensors stay on device: no host sync inside the sampling loop
        self._rows_recorded = 0
        self._lambda = self._lambda_from_posterior()

    @property
    def probe_pairs(self) -> int:
        """Hutchinson probe pairs the tracker wants at a step's first evaluation (0: none)."""
        return self.tracker.probe_pairs

    def probe_points(self, x_ve: torch.Tensor, sigma, step: int | None = None) -> ProbeRequest | None:
        """Where to evaluate both branches for the Hutchinson estimate this step: a
        :class:`~negguide.probes.ProbeRequest` (the images that probe, directions, points) or None."""
        return self.tracker.probe_points(x_ve, sigma, step)

    def _lambda_from_posterior(self) -> torch.Tensor:
        return self.config.lambda0 * self.tracker.odds()

    def current_lambda(self) -> torch.Tensor:
        """Per-image lambda of the current step (float64, ``[B]``)."""
        return self._lambda

    def observe(self, step: int, x_ve: torch.Tensor, sigma, denoised_ref: torch.Tensor,
                denoised_neg: torch.Tensor, probe_predictions=None) -> torch.Tensor:
        """Update the posterior with this step's evaluation and return lambda for this step.

        ``probe_predictions = (directions, D_ref at the probe points, D_neg at the points)`` for Hutchinson."""
        self.tracker.observe(x_ve, sigma, denoised_ref, denoised_neg, probe_predictions)
        self._lambda = self._lambda_from_posterior()
        if self.record != "none":
            sigma0 = sigma.detach().reshape(-1)[0] if torch.is_tensor(sigma) else sigma
            p, lam = self.tracker.posterior(), self._lambda
            if self.record == "mean":
                p, lam = p.mean(), lam.mean()
            self._records.append((int(step), sigma0, p, lam, self.probe_rows - self._rows_recorded))
        self._rows_recorded = self.probe_rows  # the probe points of a step are requested before it is observed
        return self._lambda

    @property
    def probe_rows(self) -> int:
        """Model rows spent on Hutchinson probes so far (both branches, all images)."""
        return self.tracker.probe_rows

    def average_extra_rows(self) -> float:
        """Model rows per image and step beyond CFG's two, so far: the negative branch and the probes."""
        return 1.0 + (self.tracker.average_probe_rows() if self.tracker.observed_steps else 0.0)

    @property
    def records(self) -> list[dict]:
        """Per step: ``{"step", "sigma", "p", "lambda", "probe_rows"}``, p and lambda per image (lists) or their
        batch means (floats), converted on read; ``probe_rows``: the model rows spent on probes at that step."""
        return [{"step": i, "sigma": float(s), "p": p.tolist(), "lambda": lam.tolist(), "probe_rows": rows}
                for i, s, p, lam, rows in self._records]

    def finish(self, x_ve: torch.Tensor, sigma_final=0.0) -> torch.Tensor:
        """Account for the last step (no evaluation follows it); returns the final posterior per image."""
        self.tracker.finish(x_ve, sigma_final)
        return self.tracker.posterior()

