"""Per-image values against batched tensors: a scalar or one value per image, broadcast over the other dims."""

from __future__ import annotations

import torch


def per_image(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[B]`` value reshaped to broadcast against ``like`` (``[B, ...]``), in ``like``'s dtype."""
    # cast before moving: float64 values (schedules, posteriors) may not exist on the target device (Apple MPS)
    v = torch.as_tensor(v).to(like.dtype).to(like.device)
    if v.ndim == 0:
        return v
    if v.ndim != 1 or v.shape[0] != like.shape[0]:
        raise ValueError(f"per-image value of shape {tuple(v.shape)} does not match batch {like.shape[0]}")
    return v.reshape(-1, *([1] * (like.ndim - 1)))
