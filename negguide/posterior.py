"""Posterior trackers for Dynamic Negative Guidance (Koulischer et al. 2025, Sec. 3.2, Algorithm 2).

DNG needs ``p = p(c- | x_sigma)``, the posterior of the forbidden concept at the current state. A tracker
keeps ``log p`` per image (float64) and updates it from what the sampler already computes: the two
UNGUIDED denoised predictions at each step (unconditional / positive ``D_ref`` and forbidden / negative
``D_neg``) and the state the guided sampler actually reached.

All trackers work in the k-diffusion (VE) frame: state ``x = x_t / sqrt(abar_t)``, noise level ``sigma``,
denoised predictions ``D``. The posterior is a property of the random variable, not of its scaling, so the
DDPM (VP) algorithm of the paper maps onto this frame exactly (see ``TransitionTracker``). Adapters that see
eps at a timestep convert with :mod:`negguide.predictions`.

Two families:

``TransitionTracker``  (paper Algorithm 2) — for ancestral / SDE samplers
    Bayes' rule on the Markov chain: each step's Gaussian transition likelihood under the forbidden model
    versus the reference model, ``log p += (-tau (|x' - mu_neg|^2 - |x' - mu_ref|^2) + delta) / (2 var)``.
    The squared-distance difference is evaluated as ``-2 b (x' - mu_ref).Delta + b^2 |Delta|^2``
    (``Delta = D_neg - D_ref``, ``b`` the step's weight on the denoised prediction), which has no
    catastrophic cancellation, accumulated in float64. The transition variance is an explicit option:
    ``"beta"`` (paper, Algorithm 2: sigma_t^2 = 1 - alpha_t = beta_t, the variance the authors' DDPM sampler
    injects), ``"beta_tilde"`` (the authors' code), ``"sampler"`` (the noise the k-diffusion ancestral step
    injects with its ``eta``; equals beta_tilde at eta = 1). Where the variance vanishes (the last step,
    sigma_next = 0) beta_t is used, as the authors' code does.

``FlowTracker`` — for deterministic samplers (DDIM eta=0, Euler, Heun, DPM++ 2M, UniPC, ...)
    A deterministic sampler injects no noise, so the transition likelihood has nothing to observe. Instead
    ``L = log p(c | x, sigma)`` is integrated as a state function along the path the sampler takes:
    ``dL = g . dx + h dsigma`` with ``g = grad_x L = (D_neg - D_ref) / sigma^2`` and, from the heat equation
    that the VE marginals obey (``d p / d sigma = sigma Laplacian p``),
    ``h = dL/dsigma = sigma [div(s_neg - s_ref) + (s_neg - s_ref) . (s_neg + s_ref)]``, ``s = (D - x)/sigma^2``.
    (This is the lead ``d log p / dt = beta/2 [div(s_c - s_u) + s_c . (s_c - s_u)]`` written for an arbitrary
    path, not only the unconditional flow.) Steps are integrated with the trapezoidal rule from the
    predictions at both ends; the final step to sigma = 0 uses the left end only. The divergence
    ``div(D_neg - D_ref)`` is the costly part; estimators:

    * ``"exact"``: a callable supplied by the caller (Gaussian mixtures; ground truth);
    * ``"hutchinson"``: ``K`` Rademacher probes with a forward finite difference, ``2K`` extra model rows per
      image and step (both branches at ``x + eps v``);
    * ``"moment"``: no extra rows. Tweedie's second moment gives ``div D = tr Cov[x0|x] / sigma^2``; the law of
      total covariance splits ``tr Cov_ref - tr Cov_neg`` into a between-class part that the two predictions
      determine, ``p / (1 - p) |D_neg - D_ref|^2``, and a within-class part that they do not; ``"moment"``
      keeps the first and drops the second (equal within-class spread), using the tracked ``p``
      (one predictor-corrector pass).

Common hyper-parameters (Algorithm 2): prior ``p0``, temperature ``tau`` scaling the evidence, offset
``delta`` added per step as ``delta / (2 var_vp)`` with var_vp the step's DDPM beta (so the paper's values
keep their meaning on any step count), clamps ``p_min <= p <= p_max``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .configs import VARIANCES, PosteriorConfig

DIVERGENCES = ("moment", "hutchinson", "exact")


def state_device(device) -> torch.device:
    """Where a tracker keeps its float64 state: the predictions' device, but the CPU for Apple's MPS, which has
    no float64."""
    device = torch.device(device if device is not None else "cpu")
    return torch.device("cpu") if device.type == "mps" else device


def _flat64(t: torch.Tensor, device) -> torch.Tensor:
    return t.detach().reshape(t.shape[0], -1).to(device).to(torch.float64)


def _sigma_vec(sigma, batch: int, device) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64, device=device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    if s.numel() != batch:
        raise ValueError(f"sigma has {s.numel()} values for a batch of {batch}")
    return s


def step_beta_vp(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """The DDPM ``beta`` of a jump from sigma to sigma_next: ``1 - abar_t / abar_s`` (VP units)."""
    return (sigma**2 - sigma_next**2) / (1 + sigma**2)


class _Tracker:
    """Shared per-image log-posterior state (float64, on the device of the predictions)."""

    extra_rows_per_image = 0
    name = "tracker"

    def __init__(self, config: PosteriorConfig, batch_size: int, device=None):
        self.config = config
        self.log_p = torch.full((batch_size,), math.log(config.prior), dtype=torch.float64,
                                device=state_device(device))
        self._log_lo, self._log_hi = math.log(config.p_min), math.log(config.p_max)

    def posterior(self) -> torch.Tensor:
        return self.log_p.exp()

    def odds(self) -> torch.Tensor:
        """``p / (1 - p)``, finite because p <= p_max < 1."""
        return (self.log_p - torch.log1p(-self.log_p.exp())).exp()

    def _accumulate(self, delta_log_p: torch.Tensor) -> None:
        # NaN evidence (a broken prediction) must not poison the state: treat it as no evidence.
        delta_log_p = torch.nan_to_num(delta_log_p, nan=0.0, posinf=1e6, neginf=-1e6)
        self.log_p = (self.log_p + delta_log_p).clamp(self._log_lo, self._log_hi)

    def _offset_term(self, sigma, sigma_next) -> torch.Tensor:
        if self.config.offset == 0.0:
            return torch.zeros_like(sigma)
        return self.config.offset / (2 * step_beta_vp(sigma, sigma_next))


class TransitionTracker(_Tracker):
    """Algorithm 2: transition-likelihood ratio of each (ancestral) step. See the module docstring."""

    name = "transition"

    def __init__(self, config: PosteriorConfig, batch_size: int, device=None, variance: str = "beta",
                 eta: float = 1.0):
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if variance == "sampler" and eta == 0.0:
            raise ValueError("a deterministic step (eta = 0) injects no noise: use a FlowTracker")
        super().__init__(config, batch_size, device)
        self.variance, self.eta = variance, eta
        self._prev = None  # (x, sigma, D_ref, D_neg) of the step that produced the next state

    def observe(self, x: torch.Tensor, sigma, denoised_ref: torch.Tensor, denoised_neg: torch.Tensor) -> None:
        """Feed the state reached at the start of a step and the step's two unguided predictions."""
        self._update_to(x, sigma)
        device = self.log_p.device
        self._prev = (_flat64(x, device), _sigma_vec(sigma, x.shape[0], device), _flat64(denoised_ref, device),
                      _flat64(denoised_neg, device))

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> None:
        """Account for the last step, whose result no model evaluation follows."""
        self._update_to(x, sigma_final)
        self._prev = None

    def _update_to(self, x: torch.Tensor, sigma) -> None:
        if self._prev is None:
            return
        x_prev, s, d_ref, d_neg = self._prev
        s_next = _sigma_vec(sigma, x.shape[0], self.log_p.device)
        x_next = _flat64(x, self.log_p.device)
        beta_tilde_ve = s_next**2 * (s**2 - s_next**2) / s**2
        sigma_up2 = (self.eta**2 * beta_tilde_ve).minimum(s_next**2)
        sigma_down = (s_next**2 - sigma_up2).clamp(min=0).sqrt()
        b = 1 - sigma_down / s  # weight of the denoised prediction in the step's mean
        mu_ref = (sigma_down / s)[:, None] * x_prev + b[:, None] * d_ref
        delta = d_neg - d_ref
        dist_diff = -2 * b * ((x_next - mu_ref) * delta).sum(1) + b**2 * (delta * delta).sum(1)
        beta_ve = (s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2)
        var_ve = {"beta": beta_ve, "beta_tilde": beta_tilde_ve, "sampler": sigma_up2}[self.variance]
        var_ve = torch.where(var_ve > 0, var_ve, beta_ve)
        var_vp = var_ve / (1 + s_next**2)
        evidence = -self.config.temperature * dist_diff / (2 * var_ve)
        self._accumulate(evidence + self.config.offset / (2 * var_vp))


Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlowTracker(_Tracker):
    """Integrates ``d log p`` along a deterministic sampler's path. See the module docstring."""

    name = "flow"

    def __init__(self, config: PosteriorConfig, batch_size: int, device=None, divergence: str = "moment",
                 probe_pairs: int = 1, exact_divergence: Divergence | None = None, fd_scale: float = 1e-2,
                 generator: torch.Generator | list[torch.Generator] | None = None):
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if divergence == "exact" and exact_divergence is None:
            raise ValueError("divergence='exact' needs exact_divergence(x, sigma) -> div(D_neg - D_ref) per image")
        if divergence == "hutchinson" and probe_pairs < 1:
            raise ValueError(f"a Hutchinson estimate needs >= 1 probe pair, got {probe_pairs}")
        super().__init__(config, batch_size, device)
        self.divergence, self.probe_pairs, self.fd_scale = divergence, probe_pairs, fd_scale
        self.exact_divergence, self.generator = exact_divergence, generator
        self.extra_rows_per_image = 2 * probe_pairs if divergence == "hutchinson" else 0
        self.name = f"flow-{divergence}" + (f"-{probe_pairs}" if divergence == "hutchinson" else "")
        self._prev = None  # (x, sigma, g, h_fixed, between) at the previous evaluation

    # -- Hutchinson probes: the backend evaluates both branches at these points in the same batch --------
    def probe_points(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(directions [K, B, ...], points [K, B, ...])`` to evaluate both models at."""
        if isinstance(self.generator, (list, tuple)):  # one per image: an image's probes ignore the rest of the batch
            if len(self.generator) != x.shape[0]:
                raise ValueError(f"{len(self.generator)} probe generators for a batch of {x.shape[0]}")
            signs = torch.stack([torch.randint(0, 2, (self.probe_pairs, *x.shape[1:]), generator=g, device="cpu")
                                 for g in self.generator], dim=1)
        else:
            signs = torch.randint(0, 2, (self.probe_pairs, *x.shape), generator=self.generator, device="cpu")
        v = signs.to(x.device, x.dtype) * 2 - 1
        s = _sigma_vec(sigma, x.shape[0], self.log_p.device).to(x.dtype).to(x.device)
        s = s.reshape(1, -1, *([1] * (x.ndim - 1)))
        return v, x.unsqueeze(0) + self.fd_scale * s * v

    def _divergence(self, x, sigma, delta, probe_predictions) -> torch.Tensor:
        if self.divergence == "exact":
            return self.exact_divergence(x, sigma).to(self.log_p.device).to(torch.float64).reshape(-1)
        v, ref_at, neg_at = probe_predictions
        k = v.shape[0]
        s = _sigma_vec(sigma, x.shape[0], self.log_p.device)
        device = self.log_p.device
        jv = (neg_at - ref_at).reshape(k, x.shape[0], -1).to(device).to(torch.float64) - delta.unsqueeze(0)
        vv = v.reshape(k, x.shape[0], -1).to(device).to(torch.float64)
        return (vv * jv).sum(2).mean(0) / (self.fd_scale * s)

    def observe(self, x: torch.Tensor, sigma, denoised_ref: torch.Tensor, denoised_neg: torch.Tensor,
                probe_predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Feed one model evaluation at the start of a step.

        ``probe_predictions = (directions, D_ref at points, D_neg at points)`` from :meth:`probe_points`,
        required for the Hutchinson estimator.
        """
        if self.divergence == "hutchinson" and probe_predictions is None:
            raise ValueError("the Hutchinson flow tracker needs the probe evaluations")
        s = _sigma_vec(sigma, x.shape[0], self.log_p.device)
        device = self.log_p.device
        xf, d_ref, d_neg = _flat64(x, device), _flat64(denoised_ref, device), _flat64(denoised_neg, device)
        delta = d_neg - d_ref
        g = delta / s[:, None] ** 2
        cross = (delta * (d_neg + d_ref - 2 * xf)).sum(1) / s**3  # sigma * (s_neg - s_ref).(s_neg + s_ref)
        between = (delta * delta).sum(1) / s**3  # sigma * |Delta|^2 / sigma^4, times p/(1-p) in "moment"
        if self.divergence == "moment":
            h_fixed = cross
        else:
            h_fixed = cross + self._divergence(x, sigma, delta, probe_predictions) / s  # sigma * div(D) / sigma^2
            between = torch.zeros_like(between)
        current = (xf, s, g, h_fixed, between)
        if self._prev is not None:
            self._integrate(self._prev, current)
        self._prev = current

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> None:
        """The last step (usually to sigma = 0, where no prediction exists): left-point rule."""
        if self._prev is None:
            return
        xp, sp, gp, hp, bp = self._prev
        s_next = _sigma_vec(sigma_final, x.shape[0], self.log_p.device)
        h = hp - self.odds() * bp
        d_log_p = (gp * (_flat64(x, self.log_p.device) - xp)).sum(1) + h * (s_next - sp)
        self._accumulate(self.config.temperature * d_log_p + self._offset_term(sp, s_next))
        self._prev = None

    def _integrate(self, prev, cur) -> None:
        xp, sp, gp, hp, bp = prev
        xc, sc, gc, hc, bc = cur
        grad_part = 0.5 * ((gp + gc) * (xc - xp)).sum(1)
        odds_start = self.odds()
        log_p_start = self.log_p.clone()
        # Predictor with p at the start for both ends, corrector with the predicted p at the end.
        d_log_p = grad_part + 0.5 * ((hp - odds_start * bp) + (hc - odds_start * bc)) * (sc - sp)
        if self.divergence == "moment":
            predicted = (log_p_start + self.config.temperature * d_log_p).clamp(self._log_lo, self._log_hi)
            odds_end = (predicted - torch.log1p(-predicted.exp())).exp()
            d_log_p = grad_part + 0.5 * ((hp - odds_start * bp) + (hc - odds_end * bc)) * (sc - sp)
        self._accumulate(self.config.temperature * d_log_p + self._offset_term(sp, sc))
