"""A k-diffusion-style model wrapper: ``denoiser(x, sigma) -> guided prediction``.

For sampling loops that take a denoiser callable (k-diffusion's samplers, the toy's reference samplers, a
pixel-space DDPM loop): the wrapped ``model(x, level, layout)`` evaluates a batch of rows, ``layout[r] =
(branch, image)`` naming row ``r``'s conditioning ("positive", "negative", "empty") and the image it belongs
to (:meth:`negguide.run.Plan.row_layout`), and returns the raw predictions of the run's frame. Every model
evaluation is ONE batched call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .run import GuidanceRun

BranchModel = Callable[[torch.Tensor, torch.Tensor, tuple[tuple[str, int], ...]], torch.Tensor]


def evaluate_per_branch(x: torch.Tensor, level: torch.Tensor, layout, models: dict) -> torch.Tensor:
    """For models that take no conditioning (one model per branch, e.g. exact mixtures): each row through the
    model of its branch."""
    out = torch.empty_like(x)
    branches = [b for b, _ in layout]
    for branch, model in models.items():
        rows = [r for r, b in enumerate(branches) if b == branch]
        if rows:
            out[rows] = model(x[rows], level[rows])
    return out


class GuidedDenoiser:
    def __init__(self, run: GuidanceRun, model: BranchModel):
        self.run, self.model = run, model
        self.evaluations = 0  # model calls made (each one batched call)

    def __call__(self, x: torch.Tensor, level, step: int | None = None) -> torch.Tensor:
        plan = self.run.plan(x, level, step=step)
        level_rows = torch.as_tensor(level, device=x.device).reshape(-1)
        if level_rows.numel() == 1:
            level_rows = level_rows.expand(x.shape[0])
        layout = plan.row_layout()
        out = self.model(plan.stacked_inputs(), level_rows[[image for _, image in layout]], layout)
        self.evaluations += 1
        return self.run.combine(plan, out)
