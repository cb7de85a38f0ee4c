"""One training loop for the testbed's three trained parts (detector, VAE, text-to-image diffusion).

A :class:`Stage` says what it trains (one ``nn.ModuleDict``), its loss at a step and how it exports the result;
:func:`run_stage` owns everything around it, with the package's habits (train/ddpm.py has the same ones):
accelerate, bf16 autocast where native, AdamW with warm-up, an EMA of the weights where the stage keeps one,
pickle-free checkpoints every N steps and every few minutes, exact resume (a step's batch, noise and dropout
are functions of (seed, step, rank) only: scenes are generated, not read), the command's time budget, and
Ctrl-C stopping after the current step with a checkpoint.

A step's CPU work (scenes, renders, captions: `Stage.data`) may run in loader worker processes, ahead of the
step: on a GPU it is the bottleneck otherwise. The worker hands the step's generator over in the state it left
it in, so `Stage.loss` draws the same numbers as when everything runs inline: the weights are bit-identical
with and without workers.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from train.device_loader import reseed_global_rng, step_generator
from train.errors import Interrupted, UsageError
from train.run_control import RunControl
from train.run_log import append_log
from train.t2i.presets import StageSchedule

DONE = "stage_done.json"


class Stage:
    """Base of a trained part. Subclasses set `name`, `schedule`, `salt` and implement the hooks."""

    name = "stage"
    salt = 0  # separates the stages' random streams under one seed
    uses_ema = False
    lr_decay = "cosine"  # or "constant" (after warm-up)

    def __init__(self, preset, device: torch.device):
        self.preset, self.device = preset, device
        self.schedule: StageSchedule = self.schedule_of(preset)

    @staticmethod
    def schedule_of(preset) -> StageSchedule:
        raise NotImplementedError

    def build(self) -> torch.nn.ModuleDict:
        """The trained networks (fresh weights; the seed is set before this is called)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What a checkpoint must have been trained with to be resumed."""
        raise NotImplementedError

    def data(self, g: torch.Generator) -> Any:
        """The CPU side of a step's batch (scenes, renders, captions), drawn from the step's generator `g`. It may
        run in a loader worker process: it must not touch the device or the networks."""
        raise NotImplementedError

    def loss(self, nets: torch.nn.ModuleDict, data: Any, g: torch.Generator, autocast) -> torch.Tensor:
        """The step's loss on `data`; `g` continues the stream that `data` was drawn from."""
        raise NotImplementedError

    def export(self, nets: torch.nn.ModuleDict, folder: Path) -> None:
        """Write the finished part (EMA weights already swapped in) into `folder`."""
        raise NotImplementedError

    def preview(self, nets: torch.nn.ModuleDict, step: int, run_dir: Path) -> None:
        """Called at each checkpoint on the main process (EMA weights swapped in): e.g. a sample grid."""


def _lr_factor(schedule: StageSchedule, decay: str):
    def factor(step: int) -> float:
        if step < schedule.warmup_steps:
            return (step + 1) / schedule.warmup_steps
        if decay == "constant":  # then, with a cool-down, linear to 0 at the last step
            left = schedule.steps - step
            return min(1.0, left / schedule.cooldown_steps) if schedule.cooldown_steps else 1.0
        progress = (step - schedule.warmup_steps) / max(1, schedule.steps - schedule.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class ema_swapped:
    """Context manager: the EMA weights in the parameters inside, the trained ones restored after."""

    def __init__(self, ema: EMAModel | None, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *_exc_info):
        if self.ema is not None:
            self.ema.restore(self.params)


class _StepData(torch.utils.data.Dataset):
    """Item i: the data of step `start + i` and the state its generator was left in."""

    def __init__(self, stage: Stage, start: int, rank: int):
        self.stage, self.start, self.rank = stage, start, rank

    def __len__(self) -> int:
        return self.stage.schedule.steps - self.start

    def generator(self, step: int) -> torch.Generator:
        preset = self.stage.preset
        return step_generator(preset.seed, step, self.rank, torch.device("cpu"), salt=self.stage.salt)

    def __getitem__(self, i: int):
        g = self.generator(self.start + i)
        return self.stage.data(g), g.get_state()


def _unchanged(item):
    return item


def step_batches(stage: Stage, start: int, rank: int, workers: int):
    """Yields (data, generator) for the steps from `start` on; with `workers` > 0 drawn ahead in that many
    forked processes (fork: the stage, its tokenizer and device-side parts are shared, never pickled)."""
    items = _StepData(stage, start, rank)
    if workers == 0:
        for step in range(start, stage.schedule.steps):
            g = items.generator(step)
            yield stage.data(g), g
        return
    loader = torch.utils.data.DataLoader(items, batch_size=None, num_workers=workers, prefetch_factor=4,
                                         collate_fn=_unchanged, multiprocessing_context="fork")
    for data, state in loader:
        g = torch.Generator()
        g.set_state(state)
        yield data, g


def make_ema(params, preset, foreach: bool = False) -> EMAModel:
    """The EMA of the weights a stage keeps (and a checkpoint's EMA state loads into)."""
    return EMAModel(params, decay=preset.ema_decay, use_ema_warmup=True, power=3 / 4, foreach=foreach)


def stage_finished(run_dir: Path) -> bool:
    return (run_dir / DONE).is_file()


def run_stage(stage: Stage, run_dir: Path, control: RunControl, accelerator: Accelerator,
              log_every: int = 25, data_workers: int = 0, finish_after_s: float | None = None) -> bool:
    """Train `stage` in `run_dir` (resuming from its newest checkpoint) and export it into `run_dir/final`;
    True when finished, False when the time budget stopped it (a checkpoint holds where it stood).
    `data_workers` > 0 draws the steps' data in that many processes (same result). `finish_after_s`: a stage
    with a constant LR also finishes (exports) after that many seconds of training in this call."""
    if finish_after_s is not None and stage.lr_decay != "constant":
        raise UsageError(f"stage {stage.name} decays its LR to a planned last step: it cannot finish on time")
    if stage_finished(run_dir):
        return True
    schedule, device = stage.schedule, accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    run_dir.mkdir(parents=True, exist_ok=True)
    # Under a constant LR the step count only says where to stop: a run may be extended or cut on resume, or
    # branched into a cool-down (a copy of a checkpoint resumed with --diffusion-cooldown).
    open_ended = ("steps", "cooldown_steps") if stage.lr_decay == "constant" else ()
    fixed = {k: v for k, v in schedule.__dict__.items() if k not in open_ended}
    config = stage.config() | {"schedule": fixed, "world_size": world, "stage": stage.name}
    torch.manual_seed(stage.preset.seed * 7919 + stage.salt)  # identical initial weights on every process
    nets = stage.build().to(device)
    params = [p for p in nets.parameters() if p.requires_grad]
    on_gpu = device.type == "cuda"  # one fused kernel for the update and per tensor list for the EMA there
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0, fused=on_gpu or None)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(schedule, stage.lr_decay))
    ema = make_ema(params, stage.preset, foreach=on_gpu) if stage.uses_ema else None

    start = 0
    found = list_checkpoints(run_dir)
    if found:
        start, model_state, state = load_checkpoint(found[-1], config, tuple(config))
        try:
            nets.load_state_dict(model_state, strict=True)
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_schedule"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
                ema.to(device)
        except (RuntimeError, KeyError, ValueError) as err:
            raise UsageError(f"checkpoint {found[-1]} does not fit stage {stage.name}: {err}") from err
        if start > schedule.steps:  # cut below what was trained: finishing here would ship the later weights
            raise UsageError(f"{found[-1]} is past the {schedule.steps} steps asked for: give --{stage.name}-steps "
                             f">= {start}, or export an earlier checkpoint (python -m train t2i-export --checkpoint)")
    nets, optimizer = accelerator.prepare(nets, optimizer)
    if accelerator.is_main_process:
        (run_dir / "config.json").write_text(json.dumps(config, indent=1))
        append_log(run_dir, {"event": "resume" if start else "start", "step": start, "device": str(device),
                             "steps": schedule.steps, "cooldown_steps": schedule.cooldown_steps,
                             "mixed_precision": accelerator.mixed_precision, "threads": torch.get_num_threads()})

    def checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(), "step": step}
            if ema is not None:
                state["ema"] = ema.state_dict()
            net = accelerator.unwrap_model(nets)
            save_checkpoint(run_dir, step, net.state_dict(), state, config)
            with ema_swapped(ema, params):
                net.eval()
                stage.preview(net, step, run_dir)
                net.train()
        accelerator.wait_for_everyone()
        control.checkpointed()

    nets.train()
    progress = tqdm(total=schedule.steps, initial=start, disable=not accelerator.is_main_process,
                    desc=stage.name, dynamic_ncols=True, file=sys.stderr)
    loss_sum, window_steps, window_start = torch.zeros((), device=device), 0, time.perf_counter()
    done, stopped = start, False
    deadline = time.perf_counter() + finish_after_s if finish_after_s is not None else math.inf
    with progress:
        try:
            for step, (data, g) in enumerate(step_batches(stage, start, rank, data_workers), start):
                reseed_global_rng(stage.preset.seed * 7919 + stage.salt, step, rank)
                loss = stage.loss(nets, data, g, accelerator.autocast)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, schedule.grad_clip)
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(params)
                loss_sum += loss.detach()
                window_steps += 1
                done = step + 1
                progress.update(1)
                if done % log_every == 0 or done == schedule.steps:
                    mean = accelerator.reduce(loss_sum, reduction="mean").item() / window_steps
                    rate = window_steps * schedule.batch_size * world / (time.perf_counter() - window_start)
                    progress.set_postfix(loss=f"{mean:.4f}", img_s=f"{rate:.0f}")
                    if accelerator.is_main_process:
                        append_log(run_dir, {"step": done, "loss": mean, "img_per_s": rate,
                                             "lr": lr_schedule.get_last_lr()[0]})
                    loss_sum.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                decision = control.decide()
                if done % schedule.checkpoint_every == 0 or done == schedule.steps or decision.checkpoint:
                    checkpoint(done)
                if time.perf_counter() > deadline and not decision.stop:
                    print(f"\n{stage.name}: finished on time at step {done}", file=sys.stderr)
                    break
                if decision.stop:
                    stopped = True
                    if decision.interrupted:
                        raise Interrupted(run_dir.parent)
                    break
        except KeyboardInterrupt as err:  # a second Ctrl-C: the newest checkpoint is where to resume
            if isinstance(err, Interrupted):
                raise
            raise Interrupted(run_dir.parent) from None
    if stopped and done < schedule.steps:
        return False
    if accelerator.is_main_process:
        net = accelerator.unwrap_model(nets)
        final = run_dir / "final"
        final.mkdir(exist_ok=True)
        net.eval()
        with ema_swapped(ema, params):
            stage.export(net, final)
        record = {"steps": done, "cooldown_steps": schedule.cooldown_steps, "config": config}
        (run_dir / DONE).write_text(json.dumps(record, indent=1))
    accelerator.wait_for_everyone()
    return True
