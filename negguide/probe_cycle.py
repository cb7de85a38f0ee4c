"""The gated tracker's probes in low dimension: the Jacobian's diagonal in the coordinate basis, one entry a probe.

In ``d`` dimensions a random probe ``v^T J v`` spreads as ``2 sum_{i != j} J_ij^2``: in 2-D, where two classes of two
modes each make ``J`` mostly off-diagonal, one probe pair's estimate of ``tr J`` spread several times the trace itself
(the toy's four-mode 2-D mixture, such a probe at every step: 78-87% of the forbidden samples found). The exact trace
costs ``d`` probe pairs, ``2 d`` rows. Here a probe pair along a coordinate axis ``e_k`` measures one entry, ``J_kk``,
exactly; each image keeps its latest entry per axis, carried to the current noise level like the gate's held
estimate, and the trace is their sum. No spread at all, a lag of at most ``d - 1`` probes instead: for
``d <= CYCLED_MAX_DIM`` the better trade.

What is kept per axis is the within-class part per unit ``(1 - p)`` (see :class:`~negguide.configs.ProbeGate`),
``(J_kk + odds Delta_k^2 / sigma^2) / (1 - p)``: a probe with the control variate along a unit ``e_k`` gives exactly
that, and the between-class part, known at every step, is added back at the current ``p``.
"""

from __future__ import annotations

import math

import torch

CYCLED_MAX_DIM = 4  # above it, deflated random probes (every step an unbiased estimate of the whole trace) win
FAR_FIELD = 0.2  # a branch's Jacobian entry below it: sigma^2 >> the data's variance along the axis (see _far)
NEAR_FIELD = 0.8  # both branches' entries in [NEAR_FIELD, 1]: sigma^2 << the class's variance along the axis (_near)
# An entry is exact but ages: held for this share of the gate's hold_efolds (whose 1 e-fold was chosen for averaging
# noisy random probes, where holding longer pays; here it only adds lag: 0.5 took the tuning configurations' mean end
# error from 0.030 to 0.018, the 1-D misses from 4-5% to 0-3%).
HOLD_SHARE = 0.5


class CycledDiagonal:
    """Per image and axis, the latest within-class diagonal entry and the noise level it was measured at (float64 on
    ``device``); ``hold_efolds``: how many e-folds of sigma an entry stays usable; ``near_field``: whether entries
    measured near the data (:meth:`_near`) are carried without re-probing (the whole-trace gate of
    :mod:`negguide.probe_gate`, 2-3 numbers per image)."""

    def __init__(self, batch_size: int, dim: int, device: torch.device, hold_efolds: float, near_field: bool = False):
        self.dim, self.hold_efolds, self.near_field = dim, hold_efolds, near_field
        self._entry = torch.zeros(batch_size, dim, dtype=torch.float64, device=device)
        self._sigma = torch.zeros(batch_size, dim, dtype=torch.float64, device=device)  # 0: never measured
        self._axis = torch.zeros(0, dtype=torch.long, device=device)  # the axes of the last directions, in order
        self._scale = torch.zeros(batch_size, dim, dtype=torch.float64, device=device)  # larger branch entry |J_kk|
        self._near = torch.zeros(batch_size, dim, dtype=torch.bool, device=device)

    def _far(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B, d]: entries still in the far field at noise ``sigma`` [B]. Where sigma^2 is large against the data's
        variance along the axis, a branch's Jacobian is ``C / sigma^2`` to first order (its entry ``J_kk`` small):
        the entry scales as ``sigma^-2`` whatever the state, until that law brings ``J_kk`` up to ``FAR_FIELD``."""
        ratio = self._sigma / sigma.clamp(min=torch.finfo(torch.float64).tiny)[:, None]
        return (self._sigma > 0) & (self._scale * ratio * ratio <= FAR_FIELD)

    def _fresh(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B, d]: measured, in the far or near field or not aged beyond ``hold_efolds`` at noise ``sigma`` [B]."""
        aged = sigma[:, None] < self._sigma * math.exp(-self.hold_efolds)
        return (self._sigma > 0) & (~aged | self._far(sigma) | self._near)

    def stale(self, sigma: torch.Tensor) -> torch.Tensor:
        """Images with an axis never measured, or measured too long ago: the gate opens for them while undecided
        (their posterior may not have moved because the entries it needs are missing)."""
        return ~self._fresh(sigma).all(dim=1)

    def directions(self, idx, shape) -> torch.Tensor:
        """``[1, n, *shape]`` float64 unit coordinate directions for the images ``idx``: each image's oldest axis (a
        never-measured one first); an image listed again takes its next oldest axis, and so on."""
        rows = torch.as_tensor(list(idx), dtype=torch.long, device=self._sigma.device)
        age = torch.where(self._sigma[rows] > 0, self._sigma[rows], torch.full_like(self._sigma[rows], math.inf))
        order = age.argsort(dim=1, descending=True, stable=True)  # column 0: argmax (the first of equals)
        self._axis = order.gather(1, _repeat_count(rows).clamp(max=self.dim - 1)[:, None]).reshape(-1)
        v = torch.nn.functional.one_hot(self._axis, self.dim).to(torch.float64)
        return v.reshape(1, len(rows), *shape)

    def store(self, idx, sigma: torch.Tensor, within: torch.Tensor, entries: torch.Tensor) -> None:
        """The within-class entries the images ``idx`` measured at noise ``sigma`` along the axes of the last
        :meth:`directions`, and both branches' Jacobian entries there (``entries``: :func:`branch_entries`)."""
        rows = torch.as_tensor(idx, device=self._sigma.device)
        axis = self._axis
        self._entry[rows, axis], self._sigma[rows, axis] = within, sigma
        self._scale[rows, axis] = entries.abs().amax(0)
        # Near the data along the axis (sigma^2 << the variance of the class around the image) each branch's entry is
        # v / (v + sigma^2) ~ 1 - sigma^2 / v, the within-class difference ~ sigma^2: carried on that law (trace).
        self._near[rows, axis] = self.near_field & (entries.amin(0) >= NEAR_FIELD) & (entries.amax(0) <= 1)

    def trace(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B]: the within-class trace per unit ``(1 - p)`` at noise ``sigma``: the fresh entries carried on the
        gate's ``sigma_then / sigma`` law (``(sigma_then / sigma)^2`` in the far field, ``(sigma / sigma_then)^2`` in
        the near field), an axis without one counted at their mean; zero where none is fresh."""
        fresh = self._fresh(sigma)
        ratio = self._sigma / sigma.clamp(min=torch.finfo(torch.float64).tiny)[:, None]
        carried = self._entry * torch.where(self._far(sigma), ratio * ratio, ratio)
        carried = torch.where(self._near, self._entry / (ratio * ratio).clamp(min=1.0), carried)
        count = fresh.sum(dim=1)
        total = torch.where(fresh, carried, torch.zeros_like(carried)).sum(dim=1)
        return torch.where(count > 0, total * self.dim / count.clamp(min=1), torch.zeros_like(total))


def _repeat_count(rows: torch.Tensor) -> torch.Tensor:
    """[n]: how often each entry of ``rows`` occurred before it."""
    order = torch.sort(rows, stable=True).indices
    ranked = rows[order]
    position = torch.arange(len(rows), device=rows.device)
    new = torch.ones_like(ranked, dtype=torch.bool)
    new[1:] = ranked[1:] != ranked[:-1]
    first = torch.cummax(torch.where(new, position, torch.zeros_like(position)), 0).values
    count = torch.empty_like(position)
    count[order] = position - first
    return count


def branch_entries(probe_predictions, d_ref: torch.Tensor, delta: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``[2, n]``: both branches' Jacobian entries ``e_k^T J e_k`` along the probed unit axes, by the probe's forward
    difference (``d_ref``, ``delta``: ``D_ref`` and ``D_neg - D_ref`` at the state, ``[n, dim]`` float64; ``step``:
    the difference's step ``fd_scale * sigma`` per image)."""
    v, ref_at, neg_at = (t[0].reshape(delta.shape).to(delta) for t in probe_predictions)
    ref = ((ref_at - d_ref) * v).sum(1) / step
    return torch.stack([ref, ref + ((neg_at - ref_at - delta) * v).sum(1) / step])
