"""Reference samplers in the k-diffusion (VE) frame, as pure functions.

``model(x, sigma, step) -> denoised`` is the (possibly guided) denoiser; it is called exactly once per step,
so a tracker inside it sees every step. ``sigmas`` is decreasing and ends with 0. DDPM is written in VE
variables too: its VP update ``x_s = mu_vp + sqrt(beta) z`` is the VE update
``x_s = (sigma_down/sigma) x + (1 - sigma_down/sigma) D + sqrt(beta_ve) z`` with ``sigma_down = sigma_s^2/sigma``
(the DDPM posterior mean) and ``beta_ve = beta_vp (1 + sigma_s^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Model = Callable[[torch.Tensor, float, int], torch.Tensor]


def _noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, dtype=x.dtype, generator=generator)


def ddpm(model: Model, x, sigmas, generator, variance: str = "beta"):
    """Ancestral DDPM (Ho et al.) on any sub-sequence of timesteps; ``variance`` "beta" (Ho's sigma^2 =
    beta, as the DNG authors sample) or "beta_tilde"."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, s, i)
        sigma_down = s_next**2 / s
        x = (sigma_down / s) * x + (1 - sigma_down / s) * denoised
        if s_next > 0:
            if variance == "beta":
                var = (s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2)
            else:
                var = s_next**2 * (s**2 - s_next**2) / s**2
            x = x + math.sqrt(var) * _noise(x, generator)
    return x


def euler(model: Model, x, sigmas, generator=None):
    """Euler on the probability-flow ODE; identical to DDIM with eta = 0 at the same noise levels."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, s, i)
        x = x + (s_next - s) * (x - denoised) / s
    return x


ddim = euler


def euler_ancestral(model: Model, x, sigmas, generator, eta: float = 1.0):
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, s, i)
        sigma_up = min(s_next, eta * math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0)))
        sigma_down = math.sqrt(s_next**2 - sigma_up**2)
        x = x + (sigma_down - s) * (x - denoised) / s
        if s_next > 0:
            x = x + sigma_up * _noise(x, generator)
    return x


def dpmpp_2m(model: Model, x, sigmas, generator=None):
    """DPM-Solver++(2M) (Lu et al. 2022), multistep in log-sigma time."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, s, i)
        if s_next == 0:
            x = denoised
            break
        h = math.log(s) - math.log(s_next)
        if old_denoised is None:
            d = denoised
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (s_next / s) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
    return x


SAMPLERS = {
    "ddpm": ddpm,
    "ddim": ddim,
    "euler": euler,
    "euler_a": euler_ancestral,
    "dpmpp_2m": dpmpp_2m,
}
STOCHASTIC = {"ddpm", "euler_a"}
