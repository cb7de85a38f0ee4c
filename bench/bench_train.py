"""Training throughput (images/s) of `python -m train ddpm` vs the diffusers `train_unconditional.py` recipe.

Both train the same UNet (the google/ddpm-cifar10-32 config by default) on the same 32x32 images, in one
process, one after the other:

* baseline: what diffusers' example does by default, re-implemented minimally: fp32, batch 16, no compile, a
  plain DataLoader (shuffle, num_workers=0) over PIL images with torchvision transforms (flip, ToTensor,
  Normalize), AdamW(1e-4, betas 0.95/0.999, wd 1e-6), cosine LR, grad clipping, no EMA;
* ours: the `train.ddpm.train_step` of our trainer: bf16 autocast, fused AdamW, the GPU-resident loader, EMA
  update included, at batch 16 (same batch) and at our preset's batch (128).

Warm-up steps are excluded; the device is synchronised before reading the clock. Prints img/s and ratios.
    python bench/bench_train.py [--steps 60] [--warmup 10] [--dataset cifar10] [--data-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from train.ddpm import build_training, train_step  # noqa: E402
from train.device_loader import DeviceBatches  # noqa: E402
from train.presets import DDPM_PRESETS, override  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_images(args) -> torch.Tensor:
    """uint8 (N, C, H, W): the real dataset when available, else random pixels (throughput is data-blind)."""
    try:
        from train.data import load_dataset

        return load_dataset(args.dataset, "train", args.data_dir, limit=args.num_images).images
    except Exception as err:  # noqa: BLE001 - a benchmark may run where no dataset is
        print(f"[bench] dataset unavailable ({err}); using random images", file=sys.stderr)
        size, channels = (32, 3) if args.dataset == "cifar10" else (28, 1)
        return torch.randint(0, 256, (args.num_images, channels, size, size), dtype=torch.uint8)


def bench_baseline(preset, images: torch.Tensor, device, steps: int, warmup: int, batch_size: int) -> float:
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    )

    class PILImages(torch.utils.data.Dataset):
        def __init__(self, array):
            self.array = array.permute(0, 2, 3, 1).numpy()

        def __len__(self):
            return len(self.array)

        def __getitem__(self, i):
            a = self.array[i]
            return tf(Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a))

    loader = torch.utils.data.DataLoader(
        PILImages(images), batch_size=batch_size, shuffle=True, num_workers=0
    )
    torch.manual_seed(0)
    model = UNet2DModel(**preset.unet).to(device).train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
    )
    lr_schedule = get_scheduler("cosine", optimizer, num_warmup_steps=500, num_training_steps=100_000)
    done, start = 0, None
    while done < warmup + steps:
        for clean in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            if done == warmup + steps:
                break
            clean = clean.to(device)
            noise = torch.randn_like(clean)
            t = torch.randint(0, 1000, (clean.shape[0],), device=device)
            pred = model(scheduler.add_noise(clean, noise, t), t).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad()
            done += 1
    sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def bench_ours(preset, images: torch.Tensor, device, steps: int, warmup: int, batch_size: int) -> float:
    from accelerate import Accelerator

    preset = override(preset, batch_size=batch_size)
    accelerator = Accelerator(
        mixed_precision="bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu"
    )
    labels = torch.zeros(len(images), dtype=torch.long)
    loader = DeviceBatches(images, labels, batch_size, device, seed=0, hflip=preset.hflip)
    model, noise_scheduler, optimizer, lr_schedule, ema = build_training(preset, device)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        train_step(step, preset, loader, model, noise_scheduler, optimizer, lr_schedule, ema, accelerator)
    sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist"])
    parser.add_argument("--preset", help="UNet preset (default: the dataset's)")
    parser.add_argument("--data-dir")
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--our-batch", type=int, default=128)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    preset = DDPM_PRESETS[args.preset or args.dataset]
    images = load_images(args)
    ours = "ours: bf16 autocast" if device.type == "cuda" else "ours: fp32 (CPU)"
    runs = [
        ("diffusers recipe: fp32, batch 16, DataLoader", bench_baseline, 16),
        (f"{ours}, device-resident data, batch 16", bench_ours, 16),
        (f"{ours}, device-resident data, batch {args.our_batch}", bench_ours, args.our_batch),
    ]
    results = {}
    for name, fn, batch in runs:
        # Larger batches take proportionally longer per step: scale steps to keep each run's images similar.
        steps = max(20, args.steps * 16 // batch) if batch > 16 else args.steps
        results[name] = fn(preset, images, device, steps, args.warmup, batch)
        print(f"{name:50s} {results[name]:9.1f} img/s", flush=True)
    base = results[runs[0][0]]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device_name}; UNet preset {preset.name}; torch {torch.__version__}")
    for name, _, _ in runs[1:]:
        print(f"ratio {name} / baseline: {results[name] / base:.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": device_name, "preset": preset.name, "img_per_s": results})
        )


if __name__ == "__main__":
    main()
