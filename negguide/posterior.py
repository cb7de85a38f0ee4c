"""Posterior trackers for Dynamic Negative Guidance (Koulischer et al. 2025, Sec. 3.2, Algorithm 2).

DNG needs ``p = p(c- | x_sigma)``, the posterior of the forbidden concept at the current state. A tracker
keeps ``log p`` per image (float64) and updates it from what the sampler already computes: the two
UNGUIDED denoised predictions at each step (unconditional / positive ``D_ref`` and forbidden / negative
``D_neg``) and the state the guided sampler actually reached.

All trackers work in the k-diffusion (VE) frame: state ``x = x_t / sqrt(abar_t)``, noise level ``sigma``,
denoised predictions ``D``. The posterior is a property of the random variable, not of its scaling, so the
DDPM (VP) algorithm of the paper maps onto this frame exactly (see ``TransitionTracker``); backends reach this
frame through :mod:`negguide.frames`. Every tracker follows :class:`PosteriorTracker` (what
:class:`negguide.dng.DynamicNegativeGuidance` drives); :func:`negguide.trackers.make_tracker` builds the one a
:class:`~negguide.configs.DNGConfig` names.

Two families:

``TransitionTracker``  (paper Algorithm 2) — for ancestral / SDE samplers
    Bayes' rule on the Markov chain: each step's Gaussian transition likelihood under the forbidden model
    versus the reference model, ``log p += (-tau (|x' - mu_neg|^2 - |x' - mu_ref|^2) + delta) / (2 var)``.
    The squared-distance difference is evaluated as ``-2 b (x' - mu_ref).Delta + b^2 |Delta|^2``
    (``Delta = D_neg - D_ref``, ``b`` the step's weight on the denoised prediction), which has no
    catastrophic cancellation, accumulated in float64. The transition variance is an explicit option:
    ``"beta"`` (paper, Algorithm 2: sigma_t^2 = 1 - alpha_t = beta_t, the variance the authors' DDPM sampler
    injects), ``"beta_tilde"`` (the authors' code), ``"sampler"`` (the noise the k-diffusion ancestral step
    injects with its ``eta``; equals beta_tilde at eta = 1). A last step to sigma 0 injects no noise and is
    not scored (the authors' code scores it with beta_t, which drives p to p_min).

``FlowTracker`` — for deterministic samplers (DDIM eta=0, Euler, Heun, DPM++ 2M, UniPC, ...)
    A deterministic sampler injects no noise, so the transition likelihood has nothing to observe. Instead
    ``L = log p(c | x, sigma)`` is integrated as a state function along the path the sampler takes:
    ``dL = g . dx + h dsigma`` with ``g = grad_x L = (D_neg - D_ref) / sigma^2`` and, from the heat equation
    that the VE marginals obey (``d p / d sigma = sigma Laplacian p``),
    ``h = dL/dsigma = sigma [div(s_neg - s_ref) + (s_neg - s_ref) . (s_neg + s_ref)]``, ``s = (D - x)/sigma^2``.
    (This is the lead ``d log p / dt = beta/2 [div(s_c - s_u) + s_c . (s_c - s_u)]`` written for an arbitrary
    path, not only the unconditional flow.) Steps are integrated with the trapezoidal rule from the
    predictions at both ends; the final step to sigma = 0 uses the left end only, and so does a step that shrinks
    sigma more than ``1 / min_step_ratio``-fold (DDIM's last step on the linear schedule: 0.079 -> 0.010 at 50
    steps). On trained models the right end's terms there are large and cancel only along the path, which two
    points cannot follow: on MNIST's DDIM-50 the trapezoid put 24-50% of 256 samples above p = 0.5 where 16
    sub-steps with both networks evaluated put 1.6-5.1%, and the left-point rule 0.4-5.1% (docs/dng-tracking.md;
    on the exact mixtures, whose integrand is smooth there, the trapezoid is slightly better). The divergence
    ``div(D_neg - D_ref)`` is the costly part; estimators:

    * ``"exact"``: a callable supplied by the caller (Gaussian mixtures; ground truth);
    * ``"hutchinson"``: ``K`` random probes with a forward finite difference, ``2K`` probe rows per image and
      step (both branches at ``x + eps v``), in the directions of :mod:`negguide.probes`;
    * ``"gated"``: the same probes (with one pair in <= 4-D: along axes, :mod:`negguide.probe_cycle`), only where
      and when :class:`~negguide.probe_gate.GatedProbes` opens, the held within-class part or the closure elsewhere;
    * ``"moment"``: no extra rows. Tweedie's second moment gives ``div D = tr Cov[x0|x] / sigma^2``; the law of
      total covariance splits ``tr Cov_ref - tr Cov_neg`` into a between-class part that the two predictions
      determine, ``p / (1 - p) |D_neg - D_ref|^2``, and a within-class part that they do not; ``"moment"``
      keeps the first and drops the second (equal within-class spread), using the tracked ``p``
      (one predictor-corrector pass).

Common hyper-parameters (Algorithm 2): prior ``p0``, temperature ``tau`` scaling the evidence, offset
``delta`` added per step as ``delta / (2 var_vp)`` with var_vp the step's DDPM beta (so the paper's values
keep their meaning on any step count), clamps ``p_min <= p <= p_max``. They shape ``log_p``, the posterior DNG
guides with. The flow tracker also keeps the concept's posterior itself, ``log_p_bayes`` (temperature 1, no offset,
numerical bounds only), and reads that one wherever its own math needs ``p``: the moment closure's odds and the
probe gate (with the text-to-image defaults, p_max 0.8 and temperature 0.2, ``log_p`` never looks decided).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import configs as C
from .configs import PosteriorConfig, ProbeGate
from .probe_gate import GatedProbes
from .probes import ProbeDirections, ProbeRequest

DIVERGENCES = ("moment", "hutchinson", "exact", "gated")


def state_device(device) -> torch.device:
    """Where a tracker keeps its float64 state: the predictions' device (the CPU for MPS, which lacks float64)."""
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


def odds_of(log_p: torch.Tensor) -> torch.Tensor:
    """``p / (1 - p)`` from ``log p``, finite for ``p < 1``."""
    return (log_p - torch.log1p(-log_p.exp())).exp()


class PosteriorTracker:
    """What :class:`negguide.dng.DynamicNegativeGuidance` drives, per image of a batch: at a step's first model
    evaluation :meth:`probe_points` (the Hutchinson probes it wants, or None) then :meth:`observe`, and
    :meth:`finish` after the last step. ``probe_pairs``: the probe pairs it asks for (2 model rows per image each
    on a step where the image probes; 0: none); ``probe_rows`` and ``observed_steps`` count what it spent."""

    name = "tracker"
    probe_pairs = 0

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.probe_rows = 0  # model rows spent on probes so far (both branches)
        self.observed_steps = 0

    def probe_points(self, x: torch.Tensor, sigma, step: int | None = None) -> ProbeRequest | None:
        return None

    def observe(self, x: torch.Tensor, sigma, denoised_ref: torch.Tensor, denoised_neg: torch.Tensor,
                probe_predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Feed one model evaluation at the start of a step (``probe_predictions``: see :meth:`probe_points`)."""
        raise NotImplementedError

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> None:
        """Account for the last step, whose result no model evaluation follows."""
        raise NotImplementedError

    def posterior(self) -> torch.Tensor:
        raise NotImplementedError

    def odds(self) -> torch.Tensor:
        """``p / (1 - p)`` per image."""
        raise NotImplementedError

    def average_probe_rows(self) -> float:
        """Probe rows per image and step so far (beyond the negative branch): the tracker's average cost."""
        return self.probe_rows / max(1, self.observed_steps * self.batch_size)


class _Tracker(PosteriorTracker):
    """Shared per-image log-posterior state (float64, on the device of the predictions)."""

    def __init__(self, config: PosteriorConfig, batch_size: int, device=None):
        super().__init__(batch_size)
        self.config = config
        self.log_p = torch.full((batch_size,), math.log(config.prior), dtype=torch.float64,
                                device=state_device(device))
        self._log_lo, self._log_hi = math.log(config.p_min), math.log(config.p_max)

    def posterior(self) -> torch.Tensor:
        return self.log_p.exp()

    def odds(self) -> torch.Tensor:
        """``p / (1 - p)``, finite because p <= p_max < 1."""
        return odds_of(self.log_p)

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
        if variance not in C.VARIANCES:
            raise ValueError(f"variance must be one of {C.VARIANCES}, got {variance!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if variance == "sampler" and eta == 0.0:
            raise ValueError("a deterministic step (eta = 0) injects no noise: use a FlowTracker")
        super().__init__(config, batch_size, device)
        self.variance, self.eta = variance, eta
        self._prev = None  # (x, sigma, D_ref, D_neg) of the step that produced the next state

    def observe(self, x: torch.Tensor, sigma, denoised_ref: torch.Tensor, denoised_neg: torch.Tensor,
                probe_predictions=None) -> None:
        """Feed the state reached at the start of a step and the step's two unguided predictions."""
        self._update_to(x, sigma)
        self.observed_steps += 1
        device = self.log_p.device
        self._prev = (_flat64(x, device), _sigma_vec(sigma, x.shape[0], device), _flat64(denoised_ref, device),
                      _flat64(denoised_neg, device))

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> None:
        self._update_to(x, sigma_final, skip_noise_free=True)  # a noise-free step has no likelihood
        self._prev = None

    def _update_to(self, x: torch.Tensor, sigma, skip_noise_free: bool = False) -> None:
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
        update = evidence + self.config.offset / (2 * var_vp)  # no evidence from a noise-free last step:
        self._accumulate(torch.where(s_next > 0, update, 0.0) if skip_noise_free else update)


Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Numerical bounds of the flow tracker's Bayes posterior (odds stay finite; 1e-9 keeps float64 rounding harmless).
BAYES_LOG_LO, BAYES_LOG_HI = math.log(1e-12), math.log1p(-1e-9)


class FlowTracker(_Tracker):
    """Integrates ``d log p`` along a deterministic sampler's path. See the module docstring.

    ``divergence``: ``"exact"``, ``"hutchinson"`` (``probe_pairs`` pairs for every image at every step),
    ``"moment"`` (no probes) or ``"gated"`` (``probe_pairs`` pairs only where and when ``gate`` says, the held
    within-class part or the moment closure elsewhere). ``start``: ``"prior"`` starts from ``log p0``;
    ``"evidence"`` from the large-sigma expansion at the first evaluation,
    ``log p0 + (D_neg - D_ref).(x - (D_neg + D_ref)/2) / sigma^2`` (at sigma_max the marginals of both models are
    nearly Gaussians around their means, and the posterior has already moved away from the prior).
    ``directions``: the probes' directions, ``"rademacher"`` or ``"deflated"`` (:mod:`negguide.probes`).
    ``min_step_ratio``: a step to ``sigma_next < min_step_ratio * sigma`` takes the left-point rule (0: the
    trapezoid on every step). The defaults are :class:`~negguide.configs.DNGConfig`'s.
    """

    name = "flow"

    def __init__(self, config: PosteriorConfig, batch_size: int, device=None, divergence: str = "moment",
                 probe_pairs: int = 1, exact_divergence: Divergence | None = None, fd_scale: float = 1e-2,
                 generator: torch.Generator | list[torch.Generator] | None = None, start: str = C.DEFAULT_FLOW_START,
                 gate: ProbeGate | None = None, directions: str = C.DEFAULT_PROBE_DIRECTIONS,
                 min_step_ratio: float = C.DEFAULT_MIN_STEP_RATIO):
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if divergence == "exact" and exact_divergence is None:
            raise ValueError("divergence='exact' needs exact_divergence(x, sigma) -> div(D_neg - D_ref) per image")
        if divergence in ("hutchinson", "gated") and probe_pairs < 1:
            raise ValueError(f"a Hutchinson estimate needs >= 1 probe pair, got {probe_pairs}")
        if directions not in C.PROBE_DIRECTIONS:
            raise ValueError(f"directions must be one of {C.PROBE_DIRECTIONS}, got {directions!r}")
        if start not in C.FLOW_STARTS:
            raise ValueError(f"start must be one of {C.FLOW_STARTS}, got {start!r}")
        if not 0.0 <= min_step_ratio < 1.0:
            raise ValueError(f"min_step_ratio must be in [0, 1), got {min_step_ratio}")
        super().__init__(config, batch_size, device)
        self.min_step_ratio = min_step_ratio
        probing = divergence in ("hutchinson", "gated")
        self.divergence, self.probe_pairs, self.fd_scale = divergence, probe_pairs if probing else 0, fd_scale
        self.exact_divergence, self.start = exact_divergence, start
        self.name = f"flow-{divergence}" + (f"-{probe_pairs}" if probing else "")
        device = self.log_p.device
        self.probes = ProbeDirections(directions, probe_pairs, batch_size, generator, device) if probing else None
        self.gate = (GatedProbes(gate or ProbeGate(), batch_size, device, config.prior, probe_pairs)
                     if divergence == "gated" else None)
        self._prev = None  # (x, sigma, g, h_fixed, h_odds, h_within) at the previous evaluation; h(p) below
        self._request: ProbeRequest | None = None  # the current step's probe request
        # The concept's posterior under the two models itself (temperature 1, no offset, no p_min / p_max): what
        # the moment closure and the gate need. ``log_p``, the posterior DNG guides with, takes the same evidence
        # tempered, offset and clamped (Algorithm 2); with p_max = 0.8 it could never look decided.
        self.log_p_bayes = self.log_p.clone().clamp(BAYES_LOG_LO, BAYES_LOG_HI)

    # -- Hutchinson probes: the backend evaluates both branches at these points in the same batch --------
    def probe_points(self, x: torch.Tensor, sigma, step: int | None = None) -> ProbeRequest | None:
        """The probe points of this step's first evaluation, or None when no image probes."""
        if self.probes is None:
            return None
        self._request = None
        s = _sigma_vec(sigma, x.shape[0], self.log_p.device)
        images = None
        if self.gate is not None:
            images = self.gate.probing(self.log_p_bayes, step, s, x[0].numel()).cpu()  # on the host
            if images.numel() == 0:
                return None
            if images.numel() == x.shape[0] and bool((images == torch.arange(x.shape[0])).all()):  # each image once
                images = None
        idx = range(x.shape[0]) if images is None else images.tolist()
        diagonal = self.gate.diagonal if self.gate is not None else None  # low dimension: coordinate axes
        v = diagonal.directions(idx, x.shape[1:]) if diagonal is not None else self.probes.draw(
            idx, x.shape[1:], self._prev[2] if self._prev is not None else None)
        v = v.to(x.device, x.dtype)
        x_sub = x if images is None else x[images.to(x.device)]
        s = (s if images is None else s[images.to(s.device)]).to(x.dtype).to(x.device)
        s = s.reshape(1, -1, *([1] * (x.ndim - 1)))
        self.probe_rows += 2 * self.probe_pairs * len(idx)
        self._request = ProbeRequest(images, v, x_sub.unsqueeze(0) + self.fd_scale * s * v)
        return self._request

    def _hutchinson(self, idx, sigma_sub, delta_sub, probe_predictions, odds_sub=None) -> torch.Tensor:
        """``div(D_neg - D_ref)`` of the images ``idx`` from their probes (forward differences); with ``odds_sub``
        the known rank-one between-class part's fluctuation is removed (a control variate, unbiased for any
        probe directions with ``E[v v^T] = I``)."""
        v, ref_at, neg_at = probe_predictions
        k, n = v.shape[0], v.shape[1]
        device = self.log_p.device
        jv = (neg_at - ref_at).reshape(k, n, -1).to(device).to(torch.float64) - delta_sub.unsqueeze(0)
        vv = v.reshape(k, n, -1).to(device).to(torch.float64)
        estimate = (vv * jv).sum(2).mean(0) / (self.fd_scale * sigma_sub)
        self.probes.remember(idx, jv.mean(0))
        if odds_sub is not None:
            along = (vv * delta_sub.unsqueeze(0)).sum(2)  # Delta . v, [K, n]
            estimate = estimate + odds_sub * ((along * along).mean(0) - (delta_sub * delta_sub).sum(1)) / sigma_sub**2
        return estimate

    def observe(self, x: torch.Tensor, sigma, denoised_ref: torch.Tensor, denoised_neg: torch.Tensor,
                probe_predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Feed one model evaluation at the start of a step.

        ``probe_predictions = (directions, D_ref at points, D_neg at points)`` for the images of the step's
        :meth:`probe_points` request (required for the Hutchinson estimator, and for the gated one when it
        asked)."""
        request, self._request = self._request, None
        if self.divergence == "hutchinson" and probe_predictions is None:
            raise ValueError("the Hutchinson flow tracker needs the probe evaluations")
        if self.divergence == "gated" and (probe_predictions is None) != (request is None):
            raise ValueError("the gated flow tracker needs the probe evaluations of exactly its request")
        s = _sigma_vec(sigma, x.shape[0], self.log_p.device)
        device = self.log_p.device
        xf, d_ref, d_neg = _flat64(x, device), _flat64(denoised_ref, device), _flat64(denoised_neg, device)
        delta = d_neg - d_ref
        if self._prev is None and self.start == "evidence":
            evidence = (delta * (xf - 0.5 * (d_neg + d_ref))).sum(1) / s**2
            self._advance(evidence, torch.zeros_like(evidence))
        g = delta / s[:, None] ** 2
        cross = (delta * (d_neg + d_ref - 2 * xf)).sum(1) / s**3  # sigma * (s_neg - s_ref).(s_neg + s_ref)
        between = (delta * delta).sum(1) / s**3  # sigma |Delta|^2 / sigma^4: the between-class part, times odds
        # h(p) = h_fixed - odds(p) * h_odds + (1 - p) * h_within  (sigma * div(D_neg - D_ref) / sigma^2 + cross)
        h_fixed, h_odds, h_within = cross.clone(), between, torch.zeros_like(cross)
        if self.divergence == "exact":
            h_fixed = cross + self.exact_divergence(x, sigma).to(device).to(torch.float64).reshape(-1) / s
            h_odds = torch.zeros_like(between)
        elif self.divergence == "hutchinson":
            h_fixed = cross + self._hutchinson(slice(None), s, delta, probe_predictions) / s
            h_odds = torch.zeros_like(between)
        elif self.divergence == "gated":
            h_within = self.gate.held(s) / s
            if request is not None:
                idx = torch.arange(x.shape[0], device=device) if request.images is None else request.images.to(device)
                self._probe(idx, s, delta, d_ref, cross, probe_predictions, h_fixed)
                h_odds, h_within = h_odds.clone(), h_within.clone()
                h_odds[idx], h_within[idx] = 0.0, 0.0
        self.observed_steps += 1
        current = (xf, s, g, h_fixed, h_odds, h_within)
        if self._prev is not None:
            self._integrate(self._prev, current)
        self._prev = current

    def _probe(self, idx, s, delta, d_ref, cross, probe_predictions, h_fixed) -> None:
        """The probing images' divergence: the within-class part per unit (1 - p) from this probe, averaged with
        the previous ones by the gate (see :class:`~negguide.configs.ProbeGate`), written into ``h_fixed``."""
        p, odds, s_i, d_i = self.log_p_bayes[idx].exp(), odds_of(self.log_p_bayes[idx]), s[idx], delta[idx]
        div = self._hutchinson(idx, s_i, d_i, probe_predictions, odds if self.gate.control_variate else None)
        between = odds * (d_i * d_i).sum(1) / s_i**2
        fd = (probe_predictions, d_ref[idx], d_i, self.fd_scale * s_i)  # the diagonal's branch entries (low dim)
        within = self.gate.average(idx, s_i, p, (div + between) / (1 - p), fd)
        h_fixed[idx] = cross[idx] + ((1 - p) * within - between) / s_i

    def _h(self, h_fixed, h_odds, h_within, log_p):
        p, odds = log_p.exp(), odds_of(log_p)
        if self.gate is not None:  # decided at the top: no between-class term (ProbeGate, last paragraph)
            odds = self.gate.between_odds(p, odds)
        return h_fixed - odds * h_odds + (1 - p) * h_within

    def finish(self, x: torch.Tensor, sigma_final=0.0) -> None:
        """The last step (usually to sigma = 0, where no prediction exists): left-point rule."""
        if self._prev is None:
            return
        xp, sp, gp, hf, ho, hw = self._prev
        s_next = _sigma_vec(sigma_final, x.shape[0], self.log_p.device)
        h = self._h(hf, ho, hw, self.log_p_bayes)
        d_log_p = (gp * (_flat64(x, self.log_p.device) - xp)).sum(1) + h * (s_next - sp)
        self._advance(d_log_p, self._offset_term(sp, s_next))
        self._prev = None

    def _integrate(self, prev, cur) -> None:
        xp, sp, gp, *hp = prev
        xc, sc, gc, *hc = cur
        grad_part = 0.5 * ((gp + gc) * (xc - xp)).sum(1)
        log_p_start = self.log_p_bayes.clone()
        # Predictor with p at the start for both ends, corrector with the predicted p at the end (the
        # p-dependent parts: the between-class moment term and the held within-class term).
        h_start = self._h(*hp, log_p_start)
        d_log_p = grad_part + 0.5 * (h_start + self._h(*hc, log_p_start)) * (sc - sp)
        if self.divergence in ("moment", "gated"):
            predicted = (log_p_start + d_log_p).clamp(BAYES_LOG_LO, BAYES_LOG_HI)
            d_log_p = grad_part + 0.5 * (h_start + self._h(*hc, predicted)) * (sc - sp)
        if self.min_step_ratio > 0:  # too coarse a step: the left-point rule, as finish() takes the last one
            left_point = (gp * (xc - xp)).sum(1) + h_start * (sc - sp)
            d_log_p = torch.where(sc >= self.min_step_ratio * sp, d_log_p, left_point)
        self._advance(d_log_p, self._offset_term(sp, sc))

    def _advance(self, d_log_p: torch.Tensor, offset: torch.Tensor) -> None:
        """The Bayes posterior takes the evidence as it is; ``log_p`` tempered, offset and clamped."""
        finite = torch.nan_to_num(d_log_p, nan=0.0, posinf=1e6, neginf=-1e6)
        self.log_p_bayes = (self.log_p_bayes + finite).clamp(BAYES_LOG_LO, BAYES_LOG_HI)
        self._accumulate(self.config.temperature * d_log_p + offset)
