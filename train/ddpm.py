"""`python -m train ddpm`: an unconditional (or single-class) DDPM on MNIST or CIFAR-10.

diffusers' UNet2DModel + DDPMScheduler (linear betas 1e-4..0.02, T = 1000, epsilon prediction,
MSE loss), trained under accelerate, so one process on a CPU or GPU and `accelerate launch` on many GPUs
run the same code.

Exact resume: every random draw of step s (batch order, flips, noise, timesteps, dropout) comes from
generators seeded with (seed, s, rank), so a run resumed from checkpoint-s replays the steps an uninterrupted
run would take; the checkpoint holds weights, optimizer, LR schedule, EMA and the RNG states.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from train.checkpoint import load_checkpoint, resolve_run, save_checkpoint
from train.data import load_dataset
from train.device_loader import DeviceBatches, reseed_global_rng, step_generator
from train.errors import Interrupted, UsageError
from train.model_dir import record_hashes
from train.presets import DDPMPreset
from train.run_control import DEFAULT_CHECKPOINT_MINUTES, Decision, RunControl, check_run_options
from train.run_log import append_log
from train.sampling import sample, save_grid

# Changing any of these between a checkpoint and --resume would silently train a different model.
RESUME_MUST_MATCH = (
    "dataset",
    "only_class",
    "drop_class",
    "limit",
    "unet",
    "batch_size",
    "lr",
    "warmup_steps",
    "recipe",
    "weight_decay",
    "ema_decay",
    "grad_clip",
    "hflip",
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "seed",
    "world_size",
)


@dataclass
class DataOptions:
    data_dir: str | None = None
    download: bool = False
    only_class: int | None = None
    drop_class: int | None = None
    limit: int | None = None


def make_noise_scheduler(preset: DDPMPreset) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=preset.num_train_timesteps,
        beta_start=preset.beta_start,
        beta_end=preset.beta_end,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=True,
    )


def make_optimizer(preset: DDPMPreset, params, fused: bool = False) -> torch.optim.Optimizer:
    if preset.recipe == "authors":
        return torch.optim.RAdam(params, lr=preset.lr, weight_decay=preset.weight_decay)
    # fused: one CUDA kernel for the whole update (GPU only); the CPU path stays the reference implementation.
    return torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay, fused=fused or None)


def make_lr_schedule(preset: DDPMPreset, optimizer):
    name = "cosine" if preset.recipe == "authors" else "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=preset.warmup_steps, num_training_steps=preset.max_steps)


def ddpm_loss(model, noise_scheduler, x: torch.Tensor, g: torch.Generator, autocast) -> torch.Tensor:
    """Epsilon-prediction MSE at uniformly drawn timesteps (Ho et al. 2020, L_simple)."""
    noise = torch.randn(x.shape, generator=g, device=x.device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x.shape[0],), generator=g, device=x.device)
    noisy = noise_scheduler.add_noise(x, noise, t)
    with autocast():
        pred = model(noisy, t).sample
    return torch.nn.functional.mse_loss(pred.float(), noise)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def build_training(preset: DDPMPreset, device: torch.device):
    """UNet, noise scheduler, optimizer, LR schedule and EMA (None for the authors' recipe), on `device`."""
    torch.manual_seed(preset.seed)  # identical initial weights on every process and every run
    model = UNet2DModel(**preset.unet).to(device)
    noise_scheduler = make_noise_scheduler(preset)
    optimizer = make_optimizer(preset, model.parameters(), fused=device.type == "cuda")
    lr_schedule = make_lr_schedule(preset, optimizer)
    ema = None
    if preset.use_ema:
        ema = EMAModel(
            model.parameters(),
            decay=preset.ema_decay,
            use_ema_warmup=True,
            power=3 / 4,
            foreach=device.type == "cuda",  # one fused kernel per tensor list instead of one per parameter
            model_cls=UNet2DModel,
            model_config=model.config,
        )
    return model, noise_scheduler, optimizer, lr_schedule, ema


def train_step(step, preset, loader, model, noise_scheduler, optimizer, lr_schedule, ema, accelerator):
    """One optimizer step on the batch of `step`; returns the (device) loss without syncing."""
    rank = accelerator.process_index
    x, _ = loader.batch(step)
    reseed_global_rng(preset.seed, step, rank)
    g = step_generator(preset.seed, step, rank, x.device)
    loss = ddpm_loss(model, noise_scheduler, x, g, accelerator.autocast)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), preset.grad_clip)
    optimizer.step()
    lr_schedule.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.step(model.parameters())
    return loss


def train_ddpm(
    preset: DDPMPreset,
    data: DataOptions,
    output_dir: str | Path | None = None,
    resume: str | Path | None = None,
    mixed_precision: str = "auto",
    cpu: bool = False,
    log_every: int = 25,
    time_budget_s: float | None = None,
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES,
) -> Path:
    """Train; return the run directory (holding checkpoints, grids, log.jsonl and the final model/).

    `time_budget_s` bounds the whole call: training stops when it is spent (with a checkpoint and model/), and
    a preview grid that would run past it is skipped. Besides every `checkpoint_every` steps, a checkpoint is
    written every `checkpoint_minutes` of wall time (0: off). Ctrl-C stops after the current step with a
    checkpoint and raises `Interrupted`.
    """
    control = RunControl(time_budget_s, checkpoint_minutes)
    preset.validate()
    check_run_options(time_budget_s, checkpoint_minutes, mixed_precision)
    ckpt, output_dir = resolve_run(resume, output_dir, default_run_dir(preset, data))

    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() and not cpu else "no"
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    images = load_dataset(
        preset.dataset, "train", data.data_dir, data.download, data.only_class, data.drop_class, data.limit
    )
    expected = (preset.unet["in_channels"], preset.unet["sample_size"], preset.unet["sample_size"])
    if tuple(images.images.shape[1:]) != expected:
        raise UsageError(
            f"preset {preset.name} expects images {expected}, {preset.dataset} has {tuple(images.images.shape[1:])}"
        )
    try:
        loader = DeviceBatches(
            images.images,
            images.labels,
            preset.batch_size,
            device,
            preset.seed,
            rank,
            world,
            hflip=preset.hflip,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err

    config: dict[str, Any] = preset.to_dict() | {
        "only_class": data.only_class,
        "drop_class": data.drop_class,
        "limit": data.limit,
        "world_size": world,
        "num_images": len(images),
    }
    must_match = RESUME_MUST_MATCH + (("max_steps",) if preset.recipe == "authors" else ())

    model, noise_scheduler, optimizer, lr_schedule, ema = build_training(preset, device)

    start_step = 0
    if ckpt is not None:
        start_step, model_state, state = load_checkpoint(ckpt, config, must_match)
        if start_step >= preset.max_steps:
            raise UsageError(f"{ckpt} is already at step {start_step} >= --max-steps {preset.max_steps}")
        try:
            model.load_state_dict(model_state, strict=True)
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_schedule"])
            # Not needed for exactness (every step reseeds), but anything drawing outside steps continues too.
            torch.set_rng_state(state["rng"]["torch_cpu"])
            if device.type == "cuda" and "torch_cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["torch_cuda"], device)
            if ema is not None:
                ema.load_state_dict(state["ema"])
                ema.to(device)  # the checkpoint's shadow weights arrive on the CPU
        except (RuntimeError, KeyError, ValueError) as err:
            raise UsageError(f"checkpoint {ckpt} does not fit this model: {err}") from err
    # The LR schedule stays outside prepare(): accelerate would step it once per process per step.
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_main_process:
        (output_dir / "config.json").write_text(json.dumps(config, indent=1))
        append_log(
            output_dir,
            {
                "event": "resume" if ckpt else "start",
                "step": start_step,
                "device": str(device),
                "world_size": world,
                "mixed_precision": mixed_precision,
                "num_images": len(images),
            },
        )

    def checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {
                "optimizer": optimizer.state_dict(),
                "lr_schedule": lr_schedule.state_dict(),
                "rng": _rng_state(device),
                "step": step,
            }
            if ema is not None:
                state["ema"] = ema.state_dict()
            save_checkpoint(output_dir, step, accelerator.unwrap_model(model).state_dict(), state, config)
        accelerator.wait_for_everyone()

    def preview(name: str) -> bool:
        """Draw samples/<name> (main process), unless it would run past the time budget; whether it was drawn."""
        if not accelerator.is_main_process:
            return True
        net = accelerator.unwrap_model(model)
        with ema_weights(ema, net):
            net.eval()
            grid = sample(
                net, noise_scheduler, preset.grid_size, preset.sample_steps, preset.seed, device,
                seconds_left=control.seconds_left(),
            )  # fmt: skip
            net.train()
        if grid is None:
            tqdm.write(f"preview {name} skipped: it would run past the --time-budget", file=sys.stderr)
            return False
        save_grid(grid, output_dir / "samples" / name)
        return True

    model.train()
    progress = tqdm(
        total=preset.max_steps,
        initial=start_step,
        disable=not accelerator.is_main_process,
        desc=f"ddpm {preset.name}",
        dynamic_ncols=True,
    )
    loss_sum = torch.zeros((), device=device)
    done = start_step
    decision = Decision()
    window_start, window_steps = time.perf_counter(), 0
    with control, progress:
        try:
            for step in range(start_step, preset.max_steps):
                loss = train_step(
                    step, preset, loader, model, noise_scheduler, optimizer, lr_schedule, ema, accelerator
                )
                loss_sum += loss.detach()
                window_steps += 1
                done = step + 1
                progress.update(1)
                if done % log_every == 0 or done == preset.max_steps:
                    # One host sync per window, not per step; averaged over processes (all log at the same step).
                    mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / window_steps
                    rate = window_steps * preset.batch_size * world / (time.perf_counter() - window_start)
                    progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.0f}")
                    if accelerator.is_main_process:
                        lr = lr_schedule.get_last_lr()[0]
                        append_log(output_dir, {"step": done, "loss": mean_loss, "img_per_s": rate, "lr": lr})
                    loss_sum.zero_()
                    window_start, window_steps = time.perf_counter(), 0
                # With several processes, one collective per log window decides.
                decision = agree(accelerator, control.decide()) if world == 1 or done % log_every == 0 else Decision()
                if done % preset.checkpoint_every == 0 or done == preset.max_steps or decision.checkpoint:
                    checkpoint(done)
                    control.checkpointed()
                if decision.stop:
                    break
                if preset.sample_every and done % preset.sample_every == 0 and done != preset.max_steps:
                    preview(f"step-{done:07d}.png")
        except KeyboardInterrupt:  # a second Ctrl-C: the newest checkpoint on disk is where to resume
            raise Interrupted(output_dir) from None
    if decision.interrupted and done < preset.max_steps:
        raise Interrupted(output_dir)

    if accelerator.is_main_process:
        model_dir = output_dir / "model"
        save_final_model(accelerator.unwrap_model(model), ema, noise_scheduler, config, model_dir)
        print(f"model (step {done}) saved in {model_dir}", file=sys.stderr)
        grid = output_dir / "samples" / "final.png"
        n, steps = preset.grid_size, preset.sample_steps
        drawn = False
        if not control.interrupted:  # after a Ctrl-C in the last step the grid can wait
            print(f"drawing {grid}: {n} images x {steps} DDIM steps", file=sys.stderr)
            drawn = preview(grid.name)
        if not drawn:
            command = f"python -m train sample --model {model_dir} --num {n} --steps {steps} --seed {preset.seed}"
            print(f"draw {grid.name} later with: {command} --grid {grid}", file=sys.stderr)
    accelerator.wait_for_everyone()
    return output_dir


def agree(accelerator: Accelerator, decision: Decision) -> Decision:
    """The same decision on every process (any process out of time or interrupted stops them all), or one
    would wait forever in a collective that the others have left."""
    if accelerator.num_processes == 1:
        return decision
    flags = torch.tensor(decision.as_list(), dtype=torch.float32, device=accelerator.device)
    return Decision(*(bool(v) for v in accelerator.reduce(flags, reduction="max").tolist()))


class ema_weights:
    """Context manager: the EMA weights in `net` inside, the raw ones restored after (no-op without EMA)."""

    def __init__(self, ema: EMAModel | None, net: torch.nn.Module):
        self.ema, self.net = ema, net

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.net.parameters())
            self.ema.copy_to(self.net.parameters())

    def __exit__(self, *_):
        if self.ema is not None:
            self.ema.restore(self.net.parameters())


def save_final_model(net: UNet2DModel, ema, noise_scheduler, config, model_dir: Path) -> None:
    """model/ = UNet (EMA weights when EMA is on) + scheduler config, loadable with from_pretrained, and the
    SHA-256 of its files (see train/model_dir.py)."""
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    with ema_weights(ema, net):
        net.save_pretrained(tmp, safe_serialization=True)
    noise_scheduler.save_pretrained(tmp)
    (tmp / "training_config.json").write_text(json.dumps(config | {"weights": "ema" if ema else "raw"}, indent=1))
    record_hashes(tmp)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    tmp.rename(model_dir)


def default_run_dir(preset: DDPMPreset, data: DataOptions) -> Path:
    suffix = f"-only{data.only_class}" if data.only_class is not None else ""
    suffix += f"-drop{data.drop_class}" if data.drop_class is not None else ""
    return Path("runs") / f"ddpm-{preset.name}{suffix}"
