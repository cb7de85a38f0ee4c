"""Common random numbers: every method and scale sees the same initial and per-step noise for sample i.

Noise is drawn in fixed chunks of ``CHUNK`` sample indices, each chunk from a generator seeded with
``(seed, chunk, draw)`` (``draw`` -1: the initial state, ``k``: the noise of step k). Sample i's noise is
therefore a pure function of (seed, i, step): independent of the batch size, of where a batch starts and of
the process that draws it, so differences between methods at equal seeds are differences of method, not of luck.
A CPU and a CUDA generator give different numbers for the same seed (torch's two generators differ): points
compared with each other come from the same device type, which each point records.
"""

from __future__ import annotations

import hashlib

import torch

from negguide import probe_generators

CHUNK = 16


def chunk_seed(seed: int, chunk: int, draw: int) -> int:
    """A 63-bit seed per (seed, chunk, draw): a hash, so neighbouring chunks and steps are unrelated streams."""
    digest = hashlib.blake2b(f"negguide-removal/{seed}/{chunk}/{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class CommonNoise:
    """Standard normal noise for the samples ``indices = range(start, stop)`` of a sweep."""

    def __init__(self, seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.seed, self.shape, self.device = seed, tuple(shape), torch.device(device)
        self._generator = torch.Generator(device=self.device)

    def draw(self, indices: range, draw: int) -> torch.Tensor:
        """``[len(indices), *shape]`` float32 noise of ``draw`` (-1: initial state, k: sampler step k)."""
        if indices.step != 1 or len(indices) == 0:
            raise ValueError("indices must be a non-empty contiguous range")
        first, last = indices.start // CHUNK, (indices.stop - 1) // CHUNK
        blocks = []
        for chunk in range(first, last + 1):
            self._generator.manual_seed(chunk_seed(self.seed, chunk, draw))
            blocks.append(torch.randn((CHUNK, *self.shape), generator=self._generator, device=self.device))
        offset = indices.start - first * CHUNK
        return torch.cat(blocks)[offset : offset + len(indices)]

    def initial(self, indices: range) -> torch.Tensor:
        return self.draw(indices, -1)

    def step(self, indices: range, step: int) -> torch.Tensor:
        return self.draw(indices, step)


def image_generators(seed: int, indices: range) -> list[torch.Generator]:
    """One CPU generator per sample for DNG's Hutchinson probe directions (the flow trackers on DDIM draw their
    signs on the host): an image's probes, hence its guidance, do not depend on the rest of its batch either."""
    return probe_generators([chunk_seed(seed, i, -2) for i in indices])
