"""The one denoising loop every family shares.

Per model evaluation: the scheduler scales the latent into the model input, the run plans which branches
to evaluate at which states, the denoiser evaluates every planned row in ONE batched call, the run combines
the rows into the guided prediction, and the scheduler steps with it. After the loop the run sees the final
state (DNG's tracker accounts for the last step).
"""

from __future__ import annotations

import inspect

import torch

from .. import GuidanceRun
from .families import Conditioning, Family
from .schedulers import SchedulerAdapter


def step_kwargs(scheduler, generator, eta: float) -> dict:
    """``eta`` and ``generator`` for schedulers whose ``step`` takes them (diffusers' own rule)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


@torch.no_grad()
def denoise(family: Family, adapter: SchedulerAdapter, run: GuidanceRun, cond: Conditioning, latents: torch.Tensor,
            timesteps: torch.Tensor, steps: int, extra_step_kwargs: dict, attention_kwargs: dict | None = None,
            progress_bar=None, callback=None, before_model=None) -> torch.Tensor:
    """Runs every timestep; returns the final latents. ``callback(step_index, timestep, latents, denoised)`` may
    return replacement latents (diffusers' ``callback_on_step_end`` contract, latents only); ``denoised`` is the
    guided prediction's x0 estimate at the step's last evaluation, in latent space. ``before_model(step,
    row_layout, first)`` hears of each model call before it runs (attention capture)."""
    scheduler = adapter.scheduler
    scale = getattr(scheduler, "scale_model_input", None)
    order = getattr(scheduler, "order", 1)
    warmup = max(len(timesteps) - steps * order, 0)
    for k, t in enumerate(timesteps):
        x_in = scale(latents, t) if scale is not None else latents
        plan = run.plan(x_in, adapter.level(k, t))
        if before_model is not None:
            before_model(plan.step, plan.row_layout(), plan.first)
        output = family.predict(plan.stacked_inputs(), t, cond.stacked(plan.row_layout()), attention_kwargs)
        guided = run.combine(plan, output)
        latents = scheduler.step(guided, t, latents, **extra_step_kwargs, return_dict=False)[0]
        if callback is not None:
            replaced = callback(k, t, latents, run.frame.denoised(guided, plan.x, plan.level))
            latents = latents if replaced is None else replaced
        if progress_bar is not None and (k == len(timesteps) - 1 or ((k + 1) > warmup and (k + 1) % order == 0)):
            progress_bar.update()
    x, level = adapter.final(latents)
    run.finish(x, level)
    return latents
