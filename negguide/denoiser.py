"""A k-diffusion-style model wrapper: ``denoiser(x, sigma) -> guided prediction``.

For sampling loops that take a denoiser callable (k-diffusion's samplers, the toy's reference samplers, a
pixel-space DDPM loop): the wrapped ``model(x, level, branches)`` evaluates a batch whose rows are grouped
per branch, ``branches[g]`` naming the conditioning of rows ``g*B .. (g+1)*B`` ("positive", "negative",
"empty"), and returns the raw predictions of the run's frame. Every model evaluation is ONE batched call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .run import GuidanceRun

BranchModel = Callable[[torch.Tensor, torch.Tensor, tuple[str, ...]], torch.Tensor]


class GuidedDenoiser:
    def __init__(self, run: GuidanceRun, model: BranchModel):
        self.run, self.model = run, model
        self.evaluations = 0  # model calls made (each one batched call)

    def __call__(self, x: torch.Tensor, level, step: int | None = None) -> torch.Tensor:
        plan = self.run.plan(x, level, step=step)
        groups = plan.groups
        level_rows = torch.as_tensor(level, device=x.device).reshape(-1)
        if level_rows.numel() == 1:
            level_rows = level_rows.expand(x.shape[0])
        out = self.model(plan.stacked_inputs(), level_rows.repeat(len(groups)), tuple(g.branch for g in groups))
        self.evaluations += 1
        return self.run.combine(plan, out)
