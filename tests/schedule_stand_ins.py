"""Schedule lookups that only the tests' stand-ins and reference checks use (no product code needs them): the
Stable Diffusion training schedule, k-diffusion's log-sigma interpolation between timesteps (A1111's
``CompVisDenoiser.sigma_to_t``), the WebUI's default k-diffusion discretisation, DDPM's posterior variance."""

from __future__ import annotations

import torch

from negguide.schedules import DiscreteSchedule


def sd_schedule() -> DiscreteSchedule:
    """SD 1.x / 2.x / XL training schedule: scaled_linear, 0.00085..0.012, T = 1000."""
    return DiscreteSchedule.from_kind("scaled_linear", 1000, 0.00085, 0.012)


def sigma_to_t(schedule: DiscreteSchedule, sigma) -> torch.Tensor:
    """Continuous timestep for a noise level, interpolating linearly in log sigma (as k-diffusion does)."""
    log_sigmas = schedule.sigmas.log()
    s = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=float(schedule.sigmas[0]), max=float(schedule.sigmas[-1]))
    log_s = s.log()
    idx = torch.searchsorted(log_sigmas, log_s.reshape(-1)).clamp(1, schedule.num_timesteps - 1)
    lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
    w = (log_s.reshape(-1) - lo) / (hi - lo)
    return (idx - 1 + w).reshape(s.shape)


def t_to_sigma(schedule: DiscreteSchedule, t) -> torch.Tensor:
    """Noise level at a (possibly fractional) timestep, interpolating linearly in log sigma."""
    t = torch.as_tensor(t, dtype=torch.float64).clamp(0, schedule.num_timesteps - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=schedule.num_timesteps - 1)
    w = t - lo
    log_sigmas = schedule.sigmas.log()
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()


def evenly_spaced_sigmas(schedule: DiscreteSchedule, n: int) -> torch.Tensor:
    """The WebUI's default k-diffusion discretisation: ``n`` timesteps evenly spaced from T-1 to 0, then 0."""
    t = torch.linspace(schedule.num_timesteps - 1, 0, n, dtype=torch.float64)
    return torch.cat([t_to_sigma(schedule, t), torch.zeros(1, dtype=torch.float64)])


def posterior_variance(schedule: DiscreteSchedule) -> torch.Tensor:
    """``beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)``, exactly 0 at ``t = 0``."""
    abar = schedule.alphas_cumprod
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return schedule.betas * (1.0 - abar_prev) / (1.0 - abar)
