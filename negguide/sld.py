"""Safe Latent Diffusion (Schramowski et al. 2023), the baseline of the DNG paper (App. E).

Pixel-wise safety scale ``mu = clamp(s_s |eps_p - eps_S|, max=1)`` where ``eps_p - eps_S < lambda_thresh``
(else 0), correction ``gamma = mu (eps_S - eps_u) + s_m nu`` with momentum
``nu <- beta_m nu + (1 - beta_m) gamma``, applied after ``warmup_steps`` as
``eps = eps_u + w (eps_p - eps_u - gamma)``. In the class-removal setting the positive branch is the
unconditional model (``eps_p = eps_u``), so this reads ``eps_u - w gamma``.

Defaults are the DNG paper's (App. D.2): s_s = 100, beta_m = 0.2, s_m = 0.1, lambda_thresh = 0.04. (The
authors' command-line parser swaps beta_m and s_m; we keep the paper's meaning: beta_m is the momentum's
decay, s_m its weight.)
"""

from __future__ import annotations

import torch

from .configs import SLDConfig
from .guidance import _finish, _lift, _scale


def sld_correction(uncond: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, momentum: torch.Tensor | None,
                   cfg: SLDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One SLD step: returns the correction ``gamma`` and the updated momentum (compute dtype)."""
    u, p, n = _lift(uncond, pos, neg)
    diff = p - n
    mu = torch.where(diff < cfg.threshold, (cfg.s_s * diff.abs()).clamp(max=1.0), torch.zeros_like(diff))
    gamma = mu * (n - u)
    if momentum is not None:
        gamma = gamma + cfg.s_m * momentum
        momentum = cfg.beta_m * momentum + (1 - cfg.beta_m) * gamma
    else:
        momentum = (1 - cfg.beta_m) * gamma
    return gamma, momentum


class SafeLatentDiffusion:
    """Stateful SLD guidance for one batch (the momentum is per pixel, hence per image).

    The momentum moves once per sampler step: evaluations of the same ``step`` (second-order samplers) all
    use the momentum from before that step, and the first of them sets the momentum for the next step.
    Without ``step``, every call is a new step."""

    def __init__(self, cfg: SLDConfig | None = None):
        self.cfg = cfg or SLDConfig()
        self.momentum: torch.Tensor | None = None  # after the latest step
        self._momentum_before: torch.Tensor | None = None  # before the current step
        self._step = -1

    def __call__(self, uncond: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, cfg_scale,
                 step: int | None = None) -> torch.Tensor:
        step = self._step + 1 if step is None else step
        new_step = step != self._step
        if new_step:
            self._momentum_before, self._step = self.momentum, step
        gamma, momentum = sld_correction(uncond, pos, neg, self._momentum_before, self.cfg)
        if new_step:
            self.momentum = momentum
        u, p = _lift(uncond, pos)
        guide = p - u - gamma if step >= self.cfg.warmup_steps else p - u
        return _finish(u + _scale(cfg_scale, u) * guide, uncond)
