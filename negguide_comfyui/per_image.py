"""Per-image pieces of a pass: one Hutchinson probe seed per image, and a conditioning restricted to some images
(a core step on which only some images probe)."""

from __future__ import annotations

import hashlib

import torch


def image_seeds(seed: int | None, noise: torch.Tensor) -> list[int]:
    """One probe seed per image, from the sampling seed and that image's own initial noise: image i of a batch
    gets the seed of a single run of its noise (ComfyUI's ``batch_index``, ``LatentFromBatch``), whatever else
    is in the batch."""
    key = str(0 if seed is None else int(seed)).encode()[:64]
    seeds = []
    for image in noise.detach().float().cpu():
        digest = hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=8, key=key).digest()
        seeds.append(int.from_bytes(digest, "little") & (2**63 - 1))
    return seeds


def select_images(conds: list[dict], images: tuple[int, ...] | None, batch: int) -> list[dict]:
    """A ComfyUI conditioning restricted to some images of the batch: per-image data (an inpainting model's
    concat latent, a batch of prompts, masks) keeps those images' rows; data shared by the batch stays."""
    if images is None:
        return conds
    index = list(images)

    def rows_of(value):
        tensor = getattr(value, "cond", None)
        if batch > 1 and torch.is_tensor(tensor) and tensor.shape[0] == batch and hasattr(value, "_copy_with"):
            return value._copy_with(tensor[index])
        return value

    out = []
    for c in conds:
        c = {**c, "model_conds": {k: rows_of(v) for k, v in c["model_conds"].items()}}
        mask = c.get("mask")
        if batch > 1 and torch.is_tensor(mask) and mask.shape[0] == batch:
            c["mask"] = mask[index]
        out.append(c)
    return out
