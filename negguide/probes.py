"""Hutchinson probes of the flow tracker: where the backend evaluates both branches once more, in which directions.

A probe pair estimates ``v^T J v`` with ``J`` the Jacobian of ``D_neg - D_ref`` (a forward finite difference at
``x + eps sigma v``); its expectation is ``tr J`` for any directions with ``E[v v^T] = I``. Directions
(:data:`negguide.configs.PROBE_DIRECTIONS`):

* ``"rademacher"``: random signs;
* ``"deflated"``: the same second moment, with the image's likely dominant directions taken exactly
  (:meth:`ProbeDirections.deflate`): lower spread at the same cost.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class ProbeRequest(NamedTuple):
    """Where the backend evaluates both branches for a Hutchinson estimate: ``points [K, n, ...]`` (``K`` probe
    pairs) for the images ``images`` (``None``: every image of the batch, in order); ``directions`` alike."""

    images: torch.Tensor | None
    directions: torch.Tensor
    points: torch.Tensor


class ProbeDirections:
    """The directions of ``pairs`` probe pairs per image, drawn on the host from ``generator`` (one, or a list of one
    per image: an image's probes then ignore the rest of the batch), float64 on ``device``."""

    def __init__(self, kind: str, pairs: int, batch_size: int, generator, device: torch.device):
        self.kind, self.pairs, self.batch_size = kind, pairs, batch_size
        self.generator, self.device = generator, device
        self._response: torch.Tensor | None = None  # deflated: each image's last probe response (J_neg - J_ref) v

    def draw(self, idx, shape, previous_gradient: torch.Tensor | None) -> torch.Tensor:
        """``[K, n, *shape]`` directions for the images ``idx``; ``previous_gradient``: each image's ``g`` (along
        ``D_neg - D_ref``) at the previous evaluation, None before the first one."""
        v = self.random_signs(idx, shape)
        return self.deflate(v, idx, previous_gradient) if self.kind == "deflated" else v

    def remember(self, idx, response: torch.Tensor) -> None:
        """The probe response of the images ``idx`` (``[n, dim]``), for the next deflation."""
        if self._response is not None:  # deflated, and drawn here (not along negguide.probe_cycle's axes)
            self._response[idx] = response

    def random_signs(self, idx, shape) -> torch.Tensor:
        """``[K, n, *shape]`` float64 entries +-1 for the images ``idx``, drawn on the host."""
        k = self.pairs
        if isinstance(self.generator, (list, tuple)):  # one per image: an image's probes ignore the rest of the batch
            if len(self.generator) != self.batch_size:
                raise ValueError(f"{len(self.generator)} probe generators for a batch of {self.batch_size}")
            bits = torch.stack([torch.randint(0, 2, (k, *shape), generator=self.generator[i], device="cpu")
                                for i in idx], dim=1)
        else:
            bits = torch.randint(0, 2, (k, len(idx), *shape), generator=self.generator, device="cpu")
        return bits.to(self.device, torch.float64) * 2 - 1

    def deflate(self, w: torch.Tensor, idx, previous_gradient: torch.Tensor | None) -> torch.Tensor:
        """``v = (I - Q Q^T) w + Q s`` per image: ``Q`` an orthonormal basis of the image's previous
        ``Delta = D_neg - D_ref`` and its last probe response ``(J_neg - J_ref) v``, ``s`` fresh random signs.

        ``E[v v^T] = (I - Q Q^T) + Q Q^T = I`` for any ``Q``, so ``v^T J v`` stays an unbiased estimate of
        ``tr J``. Where two classes still compete, the Jacobian has a large rank-one part ``c u u^T``, whose
        Rademacher estimate ``c (u.v)^2`` spreads as much as ``c |u|^2`` itself (the jumps of ``p`` a single
        probe makes mid-decision); a response ``J v`` points along ``u`` there, and ``u`` in ``Q`` contributes
        no spread. Unknown columns (the first step, an image that never probed) are zeros: ``Q`` is then an
        arbitrary orthonormal pair, which costs nothing but the guess."""
        rows = torch.as_tensor(list(idx), device=self.device)
        dim = w[0, 0].numel()
        if self._response is None:
            self._response = torch.zeros(self.batch_size, dim, dtype=torch.float64, device=self.device)
        delta = previous_gradient[rows] if previous_gradient is not None else torch.zeros_like(self._response[rows])
        # Q of the QR factorisation, bit for bit linalg.qr's, without its R: torch's CPU triu (R) waits for an
        # idle second thread (8 ms and more per call on a busy 2-core machine, against 10 us for the rest)
        reflectors, tau = torch.geqrf(torch.stack([delta, self._response[rows]], dim=2))
        basis = torch.linalg.householder_product(reflectors[..., : tau.shape[-1]], tau)  # [n, dim, min(2, dim)]
        signs = self.random_signs(idx, (basis.shape[2],))  # [K, n, min(2, dim)]
        flat = w.reshape(w.shape[0], w.shape[1], dim)
        # products and sums of elements, not einsum: a batched matmul of these tiny shapes waits for an idle second
        # thread on a busy CPU (tens of ms per call), elementwise work of this size runs on one
        along = (flat[..., None] * basis[None]).sum(dim=2)  # [K, n, m]
        return (flat + ((signs - along)[:, :, None, :] * basis[None]).sum(dim=3)).reshape(w.shape)
