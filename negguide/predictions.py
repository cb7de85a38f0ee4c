"""Conversions between noise (eps) and denoised (x0) predictions.

The WebUI's DDIM/PLMS/UniPC samplers hand the CFG callbacks eps at a timestep (VP parametrisation);
its k-diffusion samplers and Forge hand denoised x0 at a sigma (VE parametrisation). Every guidance
rule in :mod:`negguide.guidance` is an affine combination whose weights sum to one, so it gives the same
result in either space; these conversions are needed only where a quantity is not affine (the DNG
posterior update, norms in SLD / Perp-Neg).

Per-image noise levels may be given as a tensor of shape ``[B]``; they broadcast over the remaining dims.
Computation happens in the dtype of ``x`` (float64 tables are cast once).
"""

from __future__ import annotations

import torch


def _per_image(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[B]`` value reshaped to broadcast against ``like`` (``[B, ...]``)."""
    # cast before moving: float64 values (schedules, posteriors) may not exist on the target device (Apple MPS)
    v = torch.as_tensor(v).to(like.dtype).to(like.device)
    if v.ndim == 0:
        return v
    if v.ndim != 1 or v.shape[0] != like.shape[0]:
        raise ValueError(f"per-image value of shape {tuple(v.shape)} does not match batch {like.shape[0]}")
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def x0_from_eps_vp(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)``."""
    a = _per_image(alpha_bar, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0_vp(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)``."""
    a = _per_image(alpha_bar, x_t)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def denoised_from_eps(x: torch.Tensor, eps: torch.Tensor, sigma) -> torch.Tensor:
    """k-diffusion: ``D(x) = x - sigma eps`` (x in the VE scaling, ``x = x_t / sqrt(abar)``)."""
    return x - _per_image(sigma, x) * eps


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma) -> torch.Tensor:
    """k-diffusion: ``eps = (x - D(x)) / sigma``; sigma must be > 0."""
    return (x - denoised) / _per_image(sigma, x)


def ve_from_vp(x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
    """VP state ``x_t`` to the k-diffusion state ``x_t / sqrt(abar)``."""
    return x_t / _per_image(alpha_bar, x_t).sqrt()


def vp_from_ve(x: torch.Tensor, alpha_bar) -> torch.Tensor:
    return x * _per_image(alpha_bar, x).sqrt()


def score_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma) -> torch.Tensor:
    """Tweedie: the score of ``p_sigma`` at x is ``(D(x) - x) / sigma^2``."""
    s = _per_image(sigma, x)
    return (denoised - x) / (s * s)
