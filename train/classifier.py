"""`python -m train classifier`: the MNIST CNN or the CIFAR-10 ResNet-9 used to label generated samples."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from train.classifier_io import NormalizedClassifier, load_classifier, save_classifier
from train.classifier_nets import build
from train.data import load_dataset
from train.device_loader import DeviceBatches, eval_batches
from train.errors import UsageError
from train.presets import ClassifierPreset


def one_cycle(warmup_fraction: float, total_steps: int):
    """LR multiplier: linear 0 -> 1 over the warm-up fraction, then linear 1 -> 0 (the ResNet-9 recipe)."""
    peak = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < peak:
            return (step + 1) / peak
        return max(0.0, (total_steps - step) / max(1, total_steps - peak))

    return factor


@torch.no_grad()
def accuracy(
    model, images: torch.Tensor, labels: torch.Tensor, device: torch.device, tta_hflip: bool
) -> float:
    model.eval()
    correct = 0
    for start, x in zip(range(0, len(images), 1000), eval_batches(images, 1000, device), strict=True):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
            if tta_hflip:
                logits = logits + model(x.flip(3)).float()
        correct += (logits.argmax(1).cpu() == labels[start : start + len(x)]).sum().item()
    model.train()
    return correct / len(images)


def train_classifier(
    preset: ClassifierPreset,
    output_dir: str | Path | None = None,
    data_dir: str | None = None,
    download: bool = False,
    limit: int | None = None,
    test_limit: int | None = None,
    cpu: bool = False,
    time_budget_s: float | None = None,
) -> dict:
    """Train, evaluate on the test split, save; return the metrics (also in classifier.json)."""
    preset.validate()
    if time_budget_s is not None and time_budget_s <= 0:
        raise UsageError(f"--time-budget must be > 0 seconds, got {time_budget_s}")
    output_dir = Path(output_dir or Path("runs") / f"classifier-{preset.dataset}")
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    train_set = load_dataset(preset.dataset, "train", data_dir, download, limit=limit)
    test_set = load_dataset(preset.dataset, "test", data_dir, download, limit=test_limit)
    try:
        loader = DeviceBatches(
            train_set.images,
            train_set.labels,
            preset.batch_size,
            device,
            preset.seed,
            hflip=preset.hflip,
            crop_padding=preset.crop_padding,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err

    # Normalisation statistics of the training images in [-1, 1], per channel; stored with the model.
    x = train_set.images.float().div(127.5).sub(1)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    torch.manual_seed(preset.seed)
    model = NormalizedClassifier(build(preset.arch, **preset.arch_kwargs), mean, std).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    params = model.parameters()
    if preset.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=preset.lr, momentum=0.9, nesterov=True, weight_decay=preset.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay)
    total_steps = max(1, math.ceil(preset.epochs * loader.steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(preset.warmup_fraction, total_steps))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=preset.label_smoothing)

    started = time.perf_counter()
    model.train()
    steps_done = 0
    progress = tqdm(range(total_steps), desc=f"classifier {preset.name}", dynamic_ncols=True)
    for step in progress:
        images, labels = loader.batch(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        steps_done = step + 1
        if steps_done % 50 == 0:
            elapsed = time.perf_counter() - started
            progress.set_postfix(
                loss=f"{loss.item():.3f}", img_s=f"{steps_done * preset.batch_size / elapsed:.0f}"
            )
            if time_budget_s is not None and elapsed > time_budget_s:
                break
    progress.close()
    train_seconds = time.perf_counter() - started
    test_acc = accuracy(model, test_set.images, test_set.labels, device, preset.tta_hflip)

    config = {
        "arch": preset.arch,
        "arch_kwargs": preset.arch_kwargs,
        "dataset": preset.dataset,
        "classes": train_set.classes,
        "input_shape": list(train_set.images.shape[1:]),
        "input_range": [-1.0, 1.0],
        "mean": mean,
        "std": std,
        "tta_hflip": preset.tta_hflip,
        "preset": preset.to_dict(),
        "train_images": len(train_set),
        "test_images": len(test_set),
        "test_accuracy": test_acc,
        "steps": steps_done,
        "epochs_done": steps_done / loader.steps_per_epoch,
        "train_seconds": round(train_seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    save_classifier(model.float().to(memory_format=torch.contiguous_format), config, output_dir)
    print(json.dumps({k: config[k] for k in ("test_accuracy", "epochs_done", "train_seconds", "device")}))
    return config


__all__ = ["train_classifier", "load_classifier"]
