"""Explicit float64 noise-schedule tables.

Two views of the same discrete DDPM forward process are used throughout:

* VP / DDPM (timestep ``t`` in ``0..T-1``): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
* k-diffusion / VE (noise level ``sigma``): ``x = x_0 + sigma eps`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``
  and ``x = x_t / sqrt(abar_t)``. The WebUI's k-diffusion samplers live in this view.

Tables are kept in float64 so that products like ``1 - abar`` near ``t = 0`` keep their digits; callers cast
to the model dtype at the last moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BETA_KINDS = ("linear", "scaled_linear", "cosine")


def ddpm_betas(kind: str = "linear", num_timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> torch.Tensor:
    """Beta table of a discrete DDPM, float64, shape ``[T]``.

    ``linear`` is Ho et al. (1e-4..0.02 for the MNIST/CIFAR DDPMs), ``scaled_linear`` is Stable Diffusion's
    (linear in sqrt(beta), 0.00085..0.012), ``cosine`` is Nichol & Dhariwal's (clipped at 0.999).
    """
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    if kind == "cosine":
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        abar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; choose one of {BETA_KINDS}")


@dataclass(frozen=True)
class DiscreteSchedule:
    """All derived tables of one discrete DDPM schedule (float64, shape ``[T]``, index = timestep)."""

    betas: torch.Tensor

    def __post_init__(self):
        b = self.betas
        if b.dtype != torch.float64 or b.ndim != 1:
            raise ValueError("betas must be a 1-D float64 tensor")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")

    @classmethod
    def from_kind(cls, kind: str = "linear", num_timesteps: int = 1000, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> DiscreteSchedule:
        return cls(ddpm_betas(kind, num_timesteps, beta_start, beta_end))

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @property
    def sigmas(self) -> torch.Tensor:
        """k-diffusion noise levels ``sqrt((1 - abar_t) / abar_t)``, increasing with t."""
        abar = self.alphas_cumprod
        return ((1.0 - abar) / abar).sqrt()


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) noise levels, float64, ``n`` decreasing values then a final 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])
