"""The gated flow tracker's probe gate: which images probe at a step, and the within-class divergence their probes
measured, averaged over probes and held between them (the settings and the reasons: :class:`ProbeGate`)."""

from __future__ import annotations

import math

import torch

from .configs import ProbeGate
from .probe_cycle import CYCLED_MAX_DIM, HOLD_SHARE, CycledDiagonal, branch_entries

# With 2-3 numbers per image (the whole-trace gate, see GatedProbes.open): an image at p >= WHOLE_TRACE_FROM probes
# every axis, and none probes outside DECIDED. Chosen on the tuning seeds (four-mode mixture 0 and 99, random 2-D/3-D
# mixtures 0-5, 20 steps): from p >= 0.65 on the four-mode Euler end error stayed at 0.031 (0.004 from 0.5); a band of
# (0.01, 0.99) left its DDIM at 1.04-1.05 rows, (0.15, 0.85) at 0.84-0.85 (random 2-D at most 0.99) with the same end
# errors, (0.2, 0.8) took random 2-D's end error to 0.031.
WHOLE_TRACE_MAX_DIM = 3
WHOLE_TRACE_FROM = 0.5
DECIDED = (0.15, 0.85)


class GatedProbes:
    """Per-image gate state for a batch (float64 on ``device``); ``prior``: the posterior's prior p0 (an image
    whose posterior has not moved from it does not probe, but in low dimension: :meth:`open`); ``pairs``: the probe
    pairs per probing image (the low-dimensional diagonal takes one)."""

    def __init__(self, settings: ProbeGate, batch_size: int, device: torch.device, prior: float, pairs: int = 1):
        self.settings, self.prior, self.pairs = settings, prior, pairs
        self.diagonal: CycledDiagonal | None = None  # low dimension, one pair: see negguide.probe_cycle
        self._held = torch.zeros(batch_size, dtype=torch.float64, device=device)  # within-class part per (1 - p)
        self._held_sigma = torch.zeros(batch_size, dtype=torch.float64, device=device)  # 0: nothing held
        self._held_p = torch.zeros(batch_size, dtype=torch.float64, device=device)  # p at the held probe

    def open(self, log_p: torch.Tensor, step: int | None, sigma: torch.Tensor, dim: int) -> torch.Tensor:
        """Which images probe at ``step`` (noise ``sigma``, ``dim`` numbers per image): on the schedule, undecided
        and moved from the prior (``log_p``: the concept's Bayes posterior); in low dimension also an undecided
        image whose diagonal (:mod:`negguide.probe_cycle`) lacks a fresh entry, moved or not: there the
        within-class part can be what moves the posterior, and an image that never measured it never moves. With 2-3
        numbers per image (the whole-trace gate, :meth:`probing`): only such stale images, and only inside
        ``DECIDED``."""
        gate = self.settings
        if self.diagonal is None and dim <= CYCLED_MAX_DIM and self.pairs == 1:
            self.diagonal = CycledDiagonal(log_p.shape[0], dim, log_p.device, gate.hold_efolds * HOLD_SHARE,
                                           near_field=self._whole(dim))
        on_schedule = step is None or step % gate.every == 0
        p = log_p.exp()
        moved = (log_p - math.log(self.prior)).abs() >= gate.min_move
        undecided = (p >= gate.p_low) & (p <= gate.p_high)
        if self.diagonal is not None and self._whole(dim):
            # Exact entries need no re-measuring until they age (moving says nothing about them), and past DECIDED the
            # held entries and the closure finish the image's posterior as well as probes did (tuning seeds, above).
            return undecided & (p >= DECIDED[0]) & (p <= DECIDED[1]) & self.diagonal.stale(sigma) & on_schedule
        if self.diagonal is not None:
            moved = moved | self.diagonal.stale(sigma)
        return undecided & moved & on_schedule

    def _whole(self, dim: int) -> bool:
        """Whether the low-dimensional diagonal of ``dim`` axes takes the whole-trace gate (:meth:`probing`)."""
        return self.pairs == 1 and 2 <= dim <= WHOLE_TRACE_MAX_DIM

    def probing(self, log_p: torch.Tensor, step: int | None, sigma: torch.Tensor, dim: int) -> torch.Tensor:
        """[n] the images that probe at ``step`` (:meth:`open`); with 2-3 numbers per image an image at
        ``p >= WHOLE_TRACE_FROM`` is listed once per axis, and probes them all. One axis a step leaves the others
        one or two probes old, and an old entry's within-class part carries the error of the odds it was split with,
        times ``1 / (1 - p)``: on the four-mode mixture's forbidden images (p -> 1) the tracked posterior stalled
        near 0.93 while the exact one went to 0.998 (Euler, 20 steps, tuning seed 0; the end error 0.040). Every axis
        at once from p >= 1/2 on: 0.004, where log-p errors stay p-sized errors to the end."""
        opened = self.open(log_p, step, sigma, dim).nonzero()
        if self.diagonal is None or not self._whole(dim):
            return opened.reshape(-1)
        whole = opened[log_p[opened.reshape(-1)].exp() >= WHOLE_TRACE_FROM]
        return torch.cat([opened, whole.repeat(dim - 1, 1)]).reshape(-1)

    @property
    def control_variate(self) -> bool:
        """Whether probes take the control variate: always along the diagonal's axes (it makes an axis's probe its
        within-class entry)."""
        return self.settings.control_variate or self.diagonal is not None

    def average(self, idx, sigma: torch.Tensor, p: torch.Tensor, within: torch.Tensor, fd=None) -> torch.Tensor:
        """A probe's within-class part per unit (1 - p) of the images ``idx`` (at noise ``sigma``, posterior ``p``),
        averaged with each image's previous one carried to this noise level, however old; held for later steps
        (``fd``: ``branch_entries``'s arguments, for the low-dimensional diagonal, :mod:`negguide.probe_cycle`)."""
        gate = self.settings
        if self.diagonal is not None:  # exact entries: nothing to average
            self.diagonal.store(idx, sigma, within, branch_entries(*fd))
            return self.diagonal.trace(self._full(idx, sigma))[idx]
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
        if self.diagonal is not None:
            return self.diagonal.trace(sigma)
        held = self._held_sigma > 0
        fresh = held & (sigma >= self._held_sigma * math.exp(-self.settings.hold_efolds))
        scaled = self._held * self._held_sigma / sigma.clamp(min=torch.finfo(torch.float64).tiny)
        return torch.where(fresh, scaled, torch.zeros_like(scaled))

    def _full(self, idx, sigma_sub: torch.Tensor) -> torch.Tensor:
        """A batch-sized noise vector with ``sigma_sub`` at the images ``idx`` (the rest: unused)."""
        full = torch.ones_like(self._held)
        full[idx] = sigma_sub
        return full

    def between_odds(self, p: torch.Tensor, odds: torch.Tensor) -> torch.Tensor:
        """The odds the moment closure's between-class term takes: none above ``p_high`` (decided at the top)."""
        return torch.where(p > self.settings.p_high, torch.zeros_like(odds), odds)
