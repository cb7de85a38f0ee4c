"""A data loader that keeps the whole (small) dataset on the training device, airbench style.

For 28x28 / 32x32 data a DataLoader with worker processes is the bottleneck on a GPU: decoding, collating
and copying 16-image batches costs more than the UNet step. Here the uint8 dataset lives on the device once,
and each batch is an index gather plus on-device flips / crops.

Batches are a pure function of (seed, step, rank): the permutation of epoch e comes from a generator seeded
with (seed, e), and augmentation randomness from one seeded with (seed, step, rank). Resuming at step s
therefore replays exactly the batches an uninterrupted run would have seen, with no loader state to save.
"""

from __future__ import annotations

import torch

_MIX = 1_000_003  # a prime to spread (seed, step, rank) into distinct generator seeds


def step_generator(seed: int, step: int, rank: int, device: torch.device, salt: int = 0) -> torch.Generator:
    """A generator owned by one (step, rank): noise, timesteps and augmentation never depend on history."""
    g = torch.Generator(device=device)
    g.manual_seed((((seed * _MIX + step) * 4099 + rank) * 31 + salt) % (2**63 - 1))
    return g


def reseed_global_rng(seed: int, step: int, rank: int = 0) -> None:
    """Dropout draws from the global RNG: reseed it per step so it, too, depends on (seed, step, rank) only."""
    torch.manual_seed((seed * _MIX + step) * 4099 + rank)


class DeviceBatches:
    """Yields float batches in [-1, 1] of shape (B, C, H, W), sharded over `world_size` processes."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        hflip: bool = False,
        crop_padding: int = 0,
        pad_mode: str = "constant",
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be uint8 (N, C, H, W)")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.hflip = hflip
        self.crop_padding = crop_padding
        self.pad_mode = pad_mode
        self.steps_per_epoch = len(self.labels) // (batch_size * world_size)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(self.labels)} images are fewer than one batch of {batch_size} x {world_size} processes"
            )
        self._epoch = -1
        self._perm = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * _MIX + epoch)  # CPU: identical on every device
            self._perm = torch.randperm(len(self.labels), generator=g).to(self.device)
            self._epoch = epoch
        return self._perm

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.steps_per_epoch)
        start = (i * self.world_size + self.rank) * self.batch_size
        idx = self._permutation(epoch)[start : start + self.batch_size]
        x = self.images[idx].float().div_(127.5).sub_(1.0)
        g = step_generator(self.seed, step, self.rank, self.device, salt=1)
        x = augment(x, g, self.hflip, self.crop_padding, self.pad_mode)
        return x, self.labels[idx]


def augment(
    x: torch.Tensor, g: torch.Generator, hflip: bool, crop_padding: int, pad_mode: str = "constant"
) -> torch.Tensor:
    """Random horizontal flips and random translations (pad-and-crop), per image, on x's device.

    `pad_mode` "constant" pads with -1 (black: digits sit on black), "reflect" mirrors the border (natural images).
    """
    n = x.shape[0]
    if hflip:
        flip = torch.rand(n, generator=g, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if crop_padding > 0:
        p = crop_padding
        h, w = x.shape[2:]
        if pad_mode == "reflect":
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
        else:
            padded = torch.nn.functional.pad(x, (p, p, p, p), value=-1.0)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    return x


def eval_batches(images: torch.Tensor, batch_size: int, device: torch.device):
    """In-order float batches in [-1, 1] for evaluation."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].to(device).float().div_(127.5).sub_(1.0)
