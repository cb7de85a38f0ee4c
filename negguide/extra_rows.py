"""Rows a backend evaluates outside its own model call: the plan's probe rows (ComfyUI) or all its extra rows
(Forge's post-CFG function), through the backend's own evaluator.

Both programs evaluate a list of conditionings at one state per call. What differs is forced by the program:

* ComfyUI can restrict a conditioning to some images of the batch, so the probe rows of the images that probe go
  through one call, every probe point stacked (``whole_batch`` False);
* Forge's compiled conditionings hold a row for every image, so every call keeps the batch: one call per probe
  point, the other images at the sampler's state, their rows dropped after it (``whole_batch`` True).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .modes import Rows

Evaluate = Callable[[list[str], "tuple[int, ...] | None", torch.Tensor, torch.Tensor], list[torch.Tensor]]


def evaluate_extra_rows(plan, groups: Sequence[Rows], evaluate: Evaluate, sigma: torch.Tensor,
                        whole_batch: bool = False) -> dict[Rows, torch.Tensor]:
    """The predictions of ``groups`` (row groups of ``plan``) through ``evaluate(branches, images, x, sigma) ->
    [prediction per branch]``: the branches' conditionings (restricted to ``images`` unless None) at states ``x``,
    noise ``sigma`` per row. ``sigma``: the backend's noise level per image of the batch. Without ``whole_batch``
    every group must be a probe group (rows at the sampler's state go with the backend's own call)."""
    out: dict[Rows, torch.Tensor] = {}
    if whole_batch:
        by_point: dict[int | None, list[Rows]] = {}
        for rows in groups:  # the rows of one state (the sampler's, or a probe point) share a call
            by_point.setdefault(rows.probe, []).append(rows)
        for group in by_point.values():
            images = group[0].images
            inputs = plan.inputs(group[0])
            if images is not None:  # the other images' rows evaluate at the sampler's state and are dropped
                inputs = plan.x.clone()
                inputs[list(images)] = plan.inputs(group[0])
            outputs = evaluate([rows.branch for rows in group], None, inputs, sigma)
            out.update((rows, o if images is None else o[list(images)])
                       for rows, o in zip(group, outputs, strict=True))
        return out
    by_images: dict[tuple[int, ...] | None, list[Rows]] = {}
    for rows in groups:  # a step on which only some images probe names them in rows.images
        by_images.setdefault(rows.images, []).append(rows)
    for images, rows_of_images in by_images.items():
        points = sorted({rows.probe for rows in rows_of_images})
        branches = list(dict.fromkeys(rows.branch for rows in rows_of_images))
        x = torch.cat([plan.probe_inputs[k] for k in points])
        n = plan.probe_inputs.shape[1]
        at = sigma if images is None else sigma[list(images)]
        outputs = evaluate(branches, images, x, at.repeat(len(points)))
        chunks = {(b, k): out_b[j * n:(j + 1) * n] for b, out_b in zip(branches, outputs, strict=True)
                  for j, k in enumerate(points)}
        out.update({rows: chunks[(rows.branch, rows.probe)] for rows in rows_of_images})
    return out
