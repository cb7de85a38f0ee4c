"""Pixel-space samplers of the class-removal study, guided through negguide's core.

On the DDPM's own training schedule (explicit float64 tables, :class:`negguide.schedules.DiscreteSchedule`):

* ``ddpm``: ancestral sampling (Ho et al. 2020) at every training step (``steps = T``, the paper's sampler:
  variance ``beta_t``, no x0 clipping) or respaced to fewer evenly spaced timesteps (Nichol & Dhariwal 2021:
  ``beta'_t = 1 - abar_t / abar_prev``), injecting ``beta'`` or ``beta_tilde'``;
* ``ddim``: deterministic DDIM (eta = 0), where DNG needs the probability-flow tracker.

The guidance rule, DNG's posterior tracking (transition likelihood on ``ddpm``, the gated flow tracker on
``ddim``) and SLD's momentum all live in :class:`negguide.run.GuidanceRun`; this module only evaluates the rows
each plan asks for with the two networks (``positive``: the unconditional model, ``negative``: the model of the
class to forget) and steps the sampler. No host synchronisation inside the loop on a GPU (the gated tracker's
choice of probing images aside): coefficients are host floats, noise comes from :mod:`train.removal.noise`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from negguide import Frame, GuidanceRun, GuidanceSpec, SamplerInfo
from negguide.schedules import DiscreteSchedule  # the float64 DDPM tables: the study's own sampler, not a backend
from train.removal.noise import CommonNoise, image_generators


@dataclass(frozen=True)
class SamplerSettings:
    """``name``: "ddpm" or "ddim"; ``steps``: sampler steps (< T respaces); ``variance``: what "ddpm" injects,
    "beta" (the paper, Ho's sigma_t^2 = beta_t) or "beta_tilde" (the posterior variance)."""

    name: str = "ddpm"
    steps: int = 1000
    variance: str = "beta"

    @property
    def info(self) -> SamplerInfo:
        return SamplerInfo(stochastic=self.name == "ddpm", eta=1.0 if self.name == "ddpm" else 0.0)


def respaced_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0 (all of them when ``steps = T``)."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {steps}")
    t = torch.linspace(num_train_timesteps - 1, 0, steps, dtype=torch.float64).round().long()
    return t.tolist()


@dataclass(frozen=True)
class StepCoefficients:
    """``x_prev = x_coef x + eps_coef eps + noise_std z`` for one step from timestep ``t``."""

    t: int
    x_coef: float
    eps_coef: float
    noise_std: float


def step_table(schedule: DiscreteSchedule, sampler: SamplerSettings) -> list[StepCoefficients]:
    """Every step's coefficients, in float64 on the host (cast to the model dtype when applied)."""
    abar = schedule.alphas_cumprod
    timesteps = respaced_timesteps(schedule.num_timesteps, sampler.steps)
    table = []
    for i, t in enumerate(timesteps):
        abar_t = float(abar[t])
        abar_prev = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        if sampler.name == "ddim":  # x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps
            x_coef = math.sqrt(abar_prev / abar_t)
            eps_coef = math.sqrt(1 - abar_prev) - math.sqrt(abar_prev * (1 - abar_t) / abar_t)
            table.append(StepCoefficients(t, x_coef, eps_coef, 0.0))
            continue
        alpha = abar_t / abar_prev
        beta = 1 - alpha
        variance = beta if sampler.variance == "beta" else beta * (1 - abar_prev) / (1 - abar_t)
        last = i + 1 == len(timesteps)  # the final step returns the mean (no noise at t = 0)
        table.append(StepCoefficients(t, 1 / math.sqrt(alpha), -beta / (math.sqrt(alpha) * math.sqrt(1 - abar_t)),
                                      0.0 if last else math.sqrt(variance)))
    return table


class BranchNetworks:
    """negguide's rows through two networks: ``positive`` rows through the unconditional UNet, ``negative`` rows
    through the to-forget UNet, each network's rows in one batched call (rows are gathered by slicing, so no index
    tensor travels to the device). ``autocast``: bf16 on a GPU; predictions are returned in float32."""

    def __init__(self, unconditional, forget, autocast_dtype: torch.dtype | None = None):
        self.networks = {"positive": unconditional, "negative": forget}
        self.autocast_dtype = autocast_dtype

    def unguided(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The unconditional network alone (the unguided baseline and the retrained oracle)."""
        with self._autocast(x.device):
            return self.networks["positive"](x, timesteps).sample.to(x.dtype)

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, layout) -> torch.Tensor:
        segments = _branch_segments(layout)
        out = torch.empty_like(x)
        for branch, spans in segments.items():
            inputs = torch.cat([x[a:b] for a, b in spans])
            t = torch.cat([timesteps[a:b] for a, b in spans])
            with self._autocast(x.device):
                eps = self.networks[branch](inputs, t).sample
            offset = 0
            for a, b in spans:
                out[a:b] = eps[offset : offset + b - a].to(out.dtype)
                offset += b - a
        return out


def _branch_segments(layout) -> dict[str, list[tuple[int, int]]]:
    """Contiguous row spans per branch of a plan's row layout ``((branch, image), ...)``."""
    spans: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for r in range(1, len(layout) + 1):
        if r == len(layout) or layout[r][0] != layout[start][0]:
            spans.setdefault(layout[start][0], []).append((start, r))
            start = r
    return spans


@torch.no_grad()
def sample_batch(networks: BranchNetworks, schedule: DiscreteSchedule,
                 spec: GuidanceSpec | Sequence[GuidanceSpec] | None, sampler: SamplerSettings, indices: range,
                 noise: CommonNoise, record: str = "none"):
    """Samples ``indices`` of a point (float32 in the model's range, unclamped), the batch's :class:`GuidanceRun`
    (None unguided: ``spec`` None samples the unconditional network alone) and the network rows it evaluated.

    ``spec`` may be one spec per step (the np-schedule ablation: NP whose scale changes with the step): each step
    then gets its own run of the core, so a stateless mode (``np``) only. The returned run is the last step's.

    DNG's posterior is left as it is after the last step's evaluation: the core's ``finish()`` is not called,
    because on the ancestral sampler it applies a transition likelihood to the final, noise-free step, which
    drives p to p_min whatever the image (the "final posterior ~1e-6" of the first MNIST report)."""
    table = step_table(schedule, sampler)
    device = noise.device
    x = noise.initial(indices)
    runs = _runs(spec, len(indices), schedule, sampler, noise, indices, len(table), record)
    timesteps = torch.tensor([c.t for c in table], device=device)  # one transfer before the loop
    rows, run = 0, None
    for i, coef in enumerate(table):
        t = timesteps[i]
        run = runs(i)
        if run is None:
            eps = networks.unguided(x, t.expand(x.shape[0]))
            rows += x.shape[0]
        else:
            plan = run.plan(x, t, step=i)
            layout = plan.row_layout()
            inputs = plan.stacked_inputs()
            eps = run.combine(plan, networks(inputs, t.expand(inputs.shape[0]), layout))
            rows += len(layout)
        x = coef.x_coef * x + coef.eps_coef * eps.to(x.dtype)
        if coef.noise_std > 0:
            x = x + coef.noise_std * noise.step(indices, i)
    return x, run, rows


def _runs(spec, batch: int, schedule: DiscreteSchedule, sampler: SamplerSettings, noise: CommonNoise,
          indices: range, steps: int, record: str):
    """step -> the GuidanceRun guiding it (None: unguided): one run for a spec, one run per step for a list."""
    if spec is None:
        return lambda step: None
    frame = Frame.discrete_vp(schedule.alphas_cumprod, "eps")

    def make(one: GuidanceSpec) -> GuidanceRun:
        generator = image_generators(noise.seed, indices) if sampler.name == "ddim" else None
        return GuidanceRun(one, batch, frame, sampler.info, steps=steps, generator=generator, record=record)

    if isinstance(spec, GuidanceSpec):
        run = make(spec)
        return lambda step: run
    specs = list(spec)
    if len(specs) != steps:
        raise ValueError(f"{len(specs)} per-step specs for a sampler of {steps} steps")
    if any(one.mode != "np" for one in specs):
        raise ValueError("per-step specs must be stateless NP specs (a run per step would reset any state)")
    return lambda step: make(specs[step])
