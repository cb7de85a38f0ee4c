"""Per-image Hutchinson probe generators (DNG's flow trackers draw their probe directions on the host).

One CPU generator per image makes an image's guidance independent of the rest of its batch: image i of a batch
then equals a single run of image i. Each program derives the per-image seeds from what it knows of an image (the
WebUIs' seeds, diffusers' generators, ComfyUI's initial noise, the removal study's common random numbers); a
``salt`` keeps the probe directions from repeating the image noise drawn from the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def probe_generators(seeds: Sequence[int], salt: int = 0) -> list[torch.Generator]:
    """One CPU generator per image, seeded ``(seed + salt) mod 2^63``."""
    return [torch.Generator().manual_seed((int(seed) + salt) % 2**63) for seed in seeds]
