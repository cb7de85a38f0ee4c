"""`python -m train classifier`: the MNIST CNN or the CIFAR-10 whitened CNN used to label generated samples."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from train.checkpoint import load_checkpoint, remove_checkpoints, resolve_run, save_checkpoint
from train.classifier_io import NormalizedClassifier, load_classifier, save_classifier, tta_logits
from train.classifier_nets import build
from train.data import load_dataset
from train.device_loader import DeviceBatches, eval_batches, reseed_global_rng
from train.errors import Interrupted, UsageError
from train.lookahead import Lookahead
from train.presets import ClassifierPreset
from train.run_control import DEFAULT_CHECKPOINT_MINUTES, Decision, RunControl, check_run_options
from train.run_log import append_log


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


def training_device(cpu: bool) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def trains_in_bf16(device: torch.device, mixed_precision: str) -> bool:
    """Whether training runs under bf16 autocast: `mixed_precision` "bf16", or "auto" where `use_bf16`."""
    return use_bf16(device) if mixed_precision == "auto" else mixed_precision == "bf16"


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


def train_step(step, preset, loader, model, loss_fn, optimizer, schedule, lookahead, bf16) -> torch.Tensor:
    """One optimizer step on the batch of `step`; returns the loss without syncing."""
    images, labels = loader.batch(step)
    reseed_global_rng(preset.seed, step)  # dropout
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    if lookahead:
        lookahead.after_step(model, step + 1)
    return loss


def test_passes(preset: ClassifierPreset) -> int:
    """Forward passes per test image under the preset's test-time augmentation (see `tta_logits`)."""
    return (2 if preset.tta_hflip else 1) * (3 if preset.tta_translate else 1)


# What may not change between a checkpoint and --resume: the whole preset except how often it checkpoints.
def _resume_config(preset: ClassifierPreset, limit: int | None, num_images: int) -> dict:
    config = preset.to_dict() | {"limit": limit, "num_images": num_images}
    del config["checkpoint_every"]
    return config


def build_model(preset: ClassifierPreset, train_images: torch.Tensor, device: torch.device) -> NormalizedClassifier:
    """The network with its input normalisation (per-channel statistics of the training images in [-1, 1])
    and, for the whitened CNN, its whitening filters fitted to 5,000 training images."""
    x = train_images.float().div(127.5).sub(1)
    mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    torch.manual_seed(preset.seed)
    net = build(preset.arch, **preset.arch_kwargs)
    if hasattr(net, "init_whitening"):
        sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(preset.seed))[:5000]]
        net.init_whitening((sample - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1))
    return NormalizedClassifier(net, mean, std).to(device, memory_format=torch.channels_last)


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
    resume: str | Path | None = None,
    log_every: int = 25,
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES,
) -> dict:
    """Train, evaluate on the test split, save; return the metrics (also in classifier.json).

    `mixed_precision`: "auto" = bf16 autocast where the hardware has it natively (see `use_bf16`), "bf16", "no".
    Checkpoints (`checkpoint-<step>/` in the run folder) let `resume` continue a killed run exactly: batches and
    dropout are functions of (seed, step). They are written once per epoch (or every `preset.checkpoint_every`
    steps), every `checkpoint_minutes` of wall time (0: off), and when Ctrl-C stops the run after its current
    step (raising `Interrupted`); they are deleted once the finished classifier is saved. `time_budget_s` bounds
    the whole call, test evaluation included: a run stopped by it saves its classifier so far and keeps its
    checkpoint, to be resumed to the full schedule.
    """
    control = RunControl(time_budget_s, checkpoint_minutes)
    preset.validate()
    check_run_options(time_budget_s, checkpoint_minutes, mixed_precision)
    ckpt, output_dir = resolve_run(resume, output_dir, Path("runs") / f"classifier-{preset.name}")
    device = training_device(cpu)
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

    model = build_model(preset, train_set.images, device)
    bf16 = trains_in_bf16(device, mixed_precision)
    optimizer = make_optimizer(model, preset)
    total_steps = max(1, math.ceil(preset.epochs * loader.steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(preset.warmup_fraction, total_steps))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=preset.label_smoothing)
    lookahead = (
        Lookahead(model, preset.lookahead_every, preset.lookahead_decay, total_steps)
        if preset.lookahead_every
        else None
    )
    run_config = _resume_config(preset, limit, len(train_set))
    start_step, seconds_before = 0, 0.0
    if ckpt is not None:
        start_step, model_state, state = load_checkpoint(ckpt, run_config, tuple(run_config))
        try:
            model.load_state_dict(model_state, strict=True)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["lr_schedule"])
            if lookahead:
                lookahead.load_state_dict(state["lookahead"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise UsageError(f"checkpoint {ckpt} does not fit this model: {err}") from err
        seconds_before = state["train_seconds"]

    def checkpoint(steps_done: int) -> None:
        state = {
            "optimizer": optimizer.state_dict(),
            "lr_schedule": schedule.state_dict(),
            "train_seconds": seconds_before + time.perf_counter() - started,
        }
        if lookahead:
            state["lookahead"] = lookahead.state_dict()
        save_checkpoint(output_dir, steps_done, model.state_dict(), state, run_config)

    checkpoint_every = preset.checkpoint_every or loader.steps_per_epoch
    event = "resume" if ckpt else "start"
    append_log(output_dir, {"event": event, "step": start_step, "device": str(device), "bf16_autocast": bf16})
    started = time.perf_counter()
    model.train()
    steps_done = start_step
    decision = Decision()
    progress = tqdm(total=total_steps, initial=start_step, desc=f"classifier {preset.name}", dynamic_ncols=True)
    with control, progress:
        try:
            for step in range(start_step, total_steps):
                loss = train_step(step, preset, loader, model, loss_fn, optimizer, schedule, lookahead, bf16)
                steps_done = step + 1
                progress.update(1)
                elapsed = time.perf_counter() - started
                seconds_per_image = elapsed / ((steps_done - start_step) * preset.batch_size)
                if steps_done % log_every == 0 or steps_done == total_steps:
                    loss_value = loss.item()  # one host sync per log window
                    progress.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{1 / seconds_per_image:.0f}")
                    lr = schedule.get_last_lr()[0]
                    record = {"step": steps_done, "loss": loss_value, "img_per_s": 1 / seconds_per_image, "lr": lr}
                    append_log(output_dir, record)
                # The test-set evaluation after the loop must fit in the budget too; a test image pass costs at
                # most what a training image does (forward only, though in fp32).
                decision = control.decide(reserve_s=test_passes(preset) * len(test_set) * seconds_per_image)
                if steps_done % checkpoint_every == 0 or steps_done == total_steps or decision.checkpoint:
                    checkpoint(steps_done)
                    control.checkpointed()
                if decision.stop:
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: the newest checkpoint on disk is where to resume
            raise Interrupted(output_dir) from None
    if decision.interrupted and steps_done < total_steps:
        raise Interrupted(output_dir)
    if lookahead:
        lookahead.finish(model)
    train_seconds = seconds_before + time.perf_counter() - started
    test_acc = accuracy(model, test_set.images, test_set.labels, device, preset)

    config = {
        "arch": preset.arch,
        "arch_kwargs": preset.arch_kwargs,
        "dataset": preset.dataset,
        "classes": train_set.classes,
        "input_shape": list(train_set.images.shape[1:]),
        "input_range": [-1.0, 1.0],
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
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
    print(f"classifier (step {steps_done} of {total_steps}) saved in {output_dir}", file=sys.stderr)
    if steps_done == total_steps:
        remove_checkpoints(output_dir)
    summary = {k: config[k] for k in ("test_accuracy", "epochs_done", "train_seconds", "device")}
    append_log(output_dir, {"event": "saved", "step": steps_done} | summary)
    print(json.dumps(summary))
    return config


__all__ = ["train_classifier", "load_classifier"]
