"""Drawing samples from a trained UNet (DDIM for quick previews) and saving them as a PNG grid."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from PIL import Image


@torch.no_grad()
def sample(
    unet: UNet2DModel,
    train_scheduler: DDPMScheduler,
    n: int,
    steps: int,
    seed: int,
    device: torch.device,
    batch_size: int = 256,
    seconds_left: float | None = None,
) -> torch.Tensor | None:
    """`n` images in [-1, 1] with `steps` DDIM steps (eta = 0) of the model trained with `train_scheduler`.

    With `seconds_left`, the first denoising step is timed, and when all of them would take longer, sampling
    stops there and returns None: a preview grid must not run past a time budget.
    """
    scheduler = DDIMScheduler.from_config(train_scheduler.config)
    scheduler.set_timesteps(steps)
    size, channels = unet.config.sample_size, unet.config.in_channels
    g = torch.Generator(device=device).manual_seed(seed)
    use_bf16 = device.type == "cuda"
    batches = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    started = time.perf_counter()
    out = []
    for size_of_batch in batches:
        x = torch.randn((size_of_batch, channels, size, size), generator=g, device=device)
        for t in scheduler.timesteps:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                eps = unet(x, t).sample
            x = scheduler.step(eps.float(), t, x).prev_sample
            if seconds_left is not None:  # judged once, after the first step
                if (time.perf_counter() - started) * steps * len(batches) > seconds_left:
                    return None
                seconds_left = None
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None) -> Path:
    """Save images in [-1, 1] (N, C, H, W) as one PNG, `columns` per row (default: square)."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    grid = torch.zeros((c, rows * h, columns * w), dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = pixels[i]
    array = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if c == 1 else array)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
