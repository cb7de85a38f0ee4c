"""The gated flow tracker's probe gate: which images probe at a step, and the within-class divergence their probes
measured, averaged over probes and held between them (the settings and the reasons: :class:`ProbeGate`)."""

from __future__ import annotations

import math

import torch

from .configs import ProbeGate


class GatedProbes:
    """Per-image gate state for a batch (float64 on ``device``); ``prior``: the posterior's prior p0 (an image
    whose posterior has not moved from it does not probe)."""

    def __init__(self, settings: ProbeGate, batch_size: int, device: torch.device, prior: float):
        self.settings, self.prior = settings, prior
        self._held = torch.zeros(batch_size, dtype=torch.float64, device=device)  # within-class part per (1 - p)
        self._held_sigma = torch.zeros(batch_size, dtype=torch.float64, device=device)  # 0: nothing held
        self._held_p = torch.zeros(batch_size, dtype=torch.float64, device=device)  # p at the held probe

    def open(self, log_p: torch.Tensor, step: int | None) -> torch.Tensor:
        """Which images probe at ``step``: on the schedule, undecided and moved from the prior (``log_p``: the
        concept's Bayes posterior)."""
        gate = self.settings
        on_schedule = step is None or step % gate.every == 0
        p = log_p.exp()
        moved = (log_p - math.log(self.prior)).abs() >= gate.min_move
        undecided = (p >= gate.p_low) & (p <= gate.p_high)
        return undecided & moved & on_schedule

    def average(self, idx, sigma: torch.Tensor, p: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
        """A probe's within-class part per unit (1 - p) of the images ``idx`` (at noise ``sigma``, posterior ``p``),
        averaged with each image's previous one carried to this noise level, however old; held for later steps."""
        gate = self.settings
        if gate.smoothing > 0:
            held_sigma = self._held_sigma[idx]
            previous = self._held[idx] * held_sigma / sigma
            # Inverse-variance weights: an estimate per unit (1 - p) spreads as 1 / (1 - p) at its probe's p.
            past = gate.smoothing * (1 - self._held_p[idx]) ** 2
            weight = past / (past + (1 - gate.smoothing) * (1 - p) ** 2)
            within = torch.where(held_sigma > 0, (1 - weight) * within + weight * previous, within)
        self._held[idx], self._held_sigma[idx], self._held_p[idx] = within, sigma, p
        return within

    def held(self, sigma: torch.Tensor) -> torch.Tensor:
        """The held within-class divergence per unit (1 - p) at noise ``sigma``, zero where none is held or it has
        aged beyond ``hold_efolds`` e-folds of sigma."""
        held = self._held_sigma > 0
        fresh = held & (sigma >= self._held_sigma * math.exp(-self.settings.hold_efolds))
        scaled = self._held * self._held_sigma / sigma.clamp(min=torch.finfo(torch.float64).tiny)
        return torch.where(fresh, scaled, torch.zeros_like(scaled))

    def between_odds(self, p: torch.Tensor, odds: torch.Tensor) -> torch.Tensor:
        """The odds the moment closure's between-class term takes: none above ``p_high`` (decided at the top)."""
        return torch.where(p > self.settings.p_high, torch.zeros_like(odds), odds)
