"""Reference conversions between noise and denoised predictions, written out from the papers' formulas (independent
of negguide.frames, whose conversions the tests check against them)."""

import torch


def _b(v, like):
    v = torch.as_tensor(v, dtype=like.dtype)
    return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v


def x0_from_eps_vp(x_t, eps, alpha_bar):
    """``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)``."""
    a = _b(alpha_bar, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0_vp(x_t, x0, alpha_bar):
    """``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)``."""
    a = _b(alpha_bar, x_t)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def denoised_from_eps(x, eps, sigma):
    """k-diffusion: ``D(x) = x - sigma eps``."""
    return x - _b(sigma, x) * eps


def eps_from_denoised(x, denoised, sigma):
    """k-diffusion: ``eps = (x - D(x)) / sigma``."""
    return (x - denoised) / _b(sigma, x)


def ve_from_vp(x_t, alpha_bar):
    """VP state ``x_t`` to the k-diffusion state ``x_t / sqrt(abar)``."""
    return x_t / _b(alpha_bar, x_t).sqrt()
