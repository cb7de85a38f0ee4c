"""`python -m train classifier`: the MNIST CNN or the CIFAR-10 whitened CNN used to label generated samples."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from train.classifier_io import NormalizedClassifier, load_classifier, save_classifier, tta_logits
from train.classifier_nets import build
from train.data import load_dataset
from train.device_loader import DeviceBatches, eval_batches
from train.errors import UsageError
from train.lookahead import Lookahead
from train.presets import ClassifierPreset


def one_cycle(warmup_fraction: float, total_steps: int):
    """LR multiplier: linear 0 -> 1 over the warm-up fraction, then linear 1 -> 0 (one-cycle, Smith 2018)."""
    peak = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < peak:
            return (step + 1) / peak
        return max(0.0, (total_steps - step) / max(1, total_steps - peak))

    return factor


def use_bf16(device: torch.device) -> bool:
    """bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16 / AMX), where it measured 2.1x faster
    than fp32 for these convnets; CPUs without it would emulate bf16 and run slower, so they stay in fp32."""
    if device.type == "cuda":
        return True
    native_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private, hence the guard
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and native_bf16 is not None and native_bf16()


@torch.no_grad()
def accuracy(
    model, images: torch.Tensor, labels: torch.Tensor, device: torch.device, preset: ClassifierPreset
) -> float:
    model.eval()
    correct = 0
    for start, x in zip(range(0, len(images), 1000), eval_batches(images, 1000, device), strict=True):
        # fp32, as `load_classifier` runs it: the reported accuracy is the saved classifier's.
        logits = tta_logits(model, x, preset.tta_hflip, preset.tta_translate)
        correct += (logits.argmax(1).cpu() == labels[start : start + len(x)]).sum().item()
    model.train()
    return correct / len(images)


def make_optimizer(model: torch.nn.Module, preset: ClassifierPreset) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # frozen whitening / BN scales stay out
    if preset.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay)
    # One-dimensional parameters (BN shifts, biases) take a larger step; their weight decay is divided by the
    # same factor so that every parameter decays by lr * weight_decay per step.
    vectors = [p for p in params if p.ndim <= 1]
    tensors = [p for p in params if p.ndim > 1]
    scale = preset.bias_lr_scale
    groups = [
        {"params": tensors, "lr": preset.lr, "weight_decay": preset.weight_decay},
        {"params": vectors, "lr": preset.lr * scale, "weight_decay": preset.weight_decay / scale},
    ]
    return torch.optim.SGD(groups, momentum=preset.momentum, nesterov=preset.momentum > 0)


def train_classifier(
    preset: ClassifierPreset,
    output_dir: str | Path | None = None,
    data_dir: str | None = None,
    download: bool = False,
    limit: int | None = None,
    test_limit: int | None = None,
    cpu: bool = False,
    time_budget_s: float | None = None,
    mixed_precision: str = "auto",
) -> dict:
    """Train, evaluate on the test split, save; return the metrics (also in classifier.json).

    `mixed_precision`: "auto" = bf16 autocast where the hardware has it natively (see `use_bf16`), "bf16", "no".
    """
    preset.validate()
    if mixed_precision not in ("auto", "no", "bf16"):
        raise UsageError(f"--mixed-precision must be auto, no or bf16, got {mixed_precision!r}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise UsageError(f"--time-budget must be > 0 seconds, got {time_budget_s}")
    output_dir = Path(output_dir or Path("runs") / f"classifier-{preset.name}")
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
            pad_mode=preset.pad_mode,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err

    # Normalisation statistics of the training images in [-1, 1], per channel; stored with the model.
    x = train_set.images.float().div(127.5).sub(1)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    torch.manual_seed(preset.seed)
    net = build(preset.arch, **preset.arch_kwargs)
    if hasattr(net, "init_whitening"):
        whitening_sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(preset.seed))[:5000]]
        net.init_whitening(
            (whitening_sample - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        )
    model = NormalizedClassifier(net, mean, std).to(device, memory_format=torch.channels_last)
    bf16 = use_bf16(device) if mixed_precision == "auto" else mixed_precision == "bf16"
    optimizer = make_optimizer(model, preset)
    total_steps = max(1, math.ceil(preset.epochs * loader.steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(preset.warmup_fraction, total_steps))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=preset.label_smoothing)
    lookahead = (
        Lookahead(model, preset.lookahead_every, preset.lookahead_decay, total_steps)
        if preset.lookahead_every
        else None
    )

    started = time.perf_counter()
    model.train()
    steps_done = 0
    progress = tqdm(range(total_steps), desc=f"classifier {preset.name}", dynamic_ncols=True)
    for step in progress:
        images, labels = loader.batch(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        steps_done = step + 1
        if lookahead:
            lookahead.after_step(model, steps_done)
        if steps_done % 50 == 0:
            elapsed = time.perf_counter() - started
            progress.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{steps_done * preset.batch_size / elapsed:.0f}")
            if time_budget_s is not None and elapsed > time_budget_s:
                break
    progress.close()
    if lookahead:
        lookahead.finish(model)
    train_seconds = time.perf_counter() - started
    test_acc = accuracy(model, test_set.images, test_set.labels, device, preset)

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
        "tta_translate": preset.tta_translate,
        "preset": preset.to_dict(),
        "train_images": len(train_set),
        "test_images": len(test_set),
        "test_accuracy": test_acc,
        "steps": steps_done,
        "epochs_done": steps_done / loader.steps_per_epoch,
        "train_seconds": round(train_seconds, 1),
        "bf16_autocast": bf16,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    save_classifier(model.float().to(memory_format=torch.contiguous_format), config, output_dir)
    print(json.dumps({k: config[k] for k in ("test_accuracy", "epochs_done", "train_seconds", "device")}))
    return config


__all__ = ["train_classifier", "load_classifier"]
