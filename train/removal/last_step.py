"""Where DNG's posterior jumps on DDIM: the flow tracker's last step, integrated once and in sub-steps.

With the trapezoid on every step, p jumped to p_max at the last evaluation of the study's DDIM-50 runs (sigma
0.079 -> 0.010) for 24-38% of the samples that end in kept classes. This diagnostic separates the two candidate
causes, and measures the rule negguide now takes on such a step. It samples DDIM-50 in the VE frame with the study's
two UNets and negguide's flow tracker (the settings the study's DDIM DNG points use, the trapezoid on every step;
``--lambda0`` 0: unguided), and integrates the last step three ways from the same tracker state: as that sampler
does (one trapezoid between the evaluations at sigma_48 and sigma_49), with the left-point rule (what the
preset's ``dng_min_step_ratio`` selects for a step this coarse), and in ``substeps`` geometric sub-steps along
the path DDIM takes between them (the ray ``x(sigma) = D_g + sigma (x_48 - D_g) / sigma_48``), each with both
networks evaluated at its fractional timestep. If the jump is the models' disagreement at t = 0, both end the same;
if it is the quadrature (the flow evidence scales like 1/sigma^3 and sigma falls eightfold), the sub-steps remove it.
With ``substeps`` = 1 the two integrations are the same computation (the test checks that they agree exactly).

``python -m train.removal.last_step --models runs/removal-mnist-0`` (reads ``ddpm-all/model`` and
``ddpm-only0/model``); a minute on one CPU thread at 64 samples.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from negguide import DNGConfig, SamplerInfo
from negguide.trackers import make_tracker
from train.removal.models import StudyModels, load_study_models
from train.removal.presets import MNIST_CPU
from train.removal.sampler import respaced_timesteps


class VEDenoisers:
    """Both networks' denoised predictions ``D(x, sigma)`` in the VE frame, at any sigma of the schedule's range
    (the timestep interpolated in log sigma: the sub-steps fall between the training timesteps)."""

    def __init__(self, models: StudyModels):
        self.log_sigmas = models.schedule.sigmas.to(torch.float64).log()
        self.networks = (models.unconditional, models.forget)

    def sigma(self, t: int) -> float:
        return float(self.log_sigmas[t].exp())

    def timestep(self, sigma: float) -> float:
        log_sigma = math.log(sigma)
        i = int(torch.searchsorted(self.log_sigmas, torch.tensor(log_sigma, dtype=torch.float64)).clamp(1, None))
        i = min(i, len(self.log_sigmas) - 1)
        lo, hi = float(self.log_sigmas[i - 1]), float(self.log_sigmas[i])
        return i - 1 + (log_sigma - lo) / (hi - lo)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        scale, t = 1 / math.sqrt(1 + sigma**2), torch.full((x.shape[0],), self.timestep(sigma))
        eps = [net((x * scale).float(), t).sample.to(torch.float64) for net in self.networks]
        return x - sigma * eps[0], x - sigma * eps[1]


def _observe(tracker, denoisers: VEDenoisers, x: torch.Tensor, sigma: float, step: int):
    """Both predictions at ``x``, fed to the tracker with the probes it asks for; returns (D_ref, D_neg)."""
    d_ref, d_neg = denoisers(x, sigma)
    request, probes = tracker.probe_points(x, sigma, step), None
    if request is not None:
        flat = request.points.reshape(-1, *x.shape[1:])
        ref_at, neg_at = denoisers(flat, sigma)
        probes = (request.directions, ref_at.reshape(request.points.shape), neg_at.reshape(request.points.shape))
    tracker.observe(x, sigma, d_ref, d_neg, probe_predictions=probes)
    return d_ref, d_neg


def last_step_posteriors(models: StudyModels, samples: int = 64, lambda0: float = 2.0, substeps: int = 16,
                         steps: int = 50, seed: int = 0) -> dict:
    """p at the second-to-last and last evaluations of a DDIM run (DNG with ``lambda0``; 0: unguided) whose
    tracker integrates every step with the trapezoid, and p at the last one when the last step is integrated in
    ``substeps`` sub-steps along DDIM's ray instead, or with the left-point rule the study's flow tracker takes on
    such a step (``dng_min_step_ratio``)."""
    preset = MNIST_CPU
    config = DNGConfig(prior=preset.dng_prior, temperature=preset.dng_temperature, offset=preset.dng_offset,
                       p_max=min(preset.dng_p_max), tracker="auto", min_step_ratio=0.0)
    tracker = make_tracker(config, SamplerInfo(stochastic=False, eta=0.0), samples,
                           generator=torch.Generator().manual_seed(seed + 1))
    denoisers = VEDenoisers(models)
    sigmas = [denoisers.sigma(t) for t in respaced_timesteps(models.schedule.num_timesteps, steps)]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((samples, *models.image_shape), generator=generator, dtype=torch.float64)
    x = x * math.sqrt(1 + sigmas[0] ** 2)
    posteriors, state = [], None
    for k, sigma in enumerate(sigmas):
        if k == steps - 1:
            state, x_last = copy.deepcopy(tracker), x  # after the second-to-last evaluation, before the last
        d_ref, d_neg = _observe(tracker, denoisers, x, sigma, k)
        p = tracker.posterior()
        posteriors.append(p.clone())
        lam = (lambda0 * p / (1 - p)).view(-1, *([1] * (x.ndim - 1)))
        guided = d_ref - lam * (d_neg - d_ref)
        if k == steps - 2:
            ray_start, ray_guided = x, guided
        sigma_next = sigmas[k + 1] if k + 1 < steps else 0.0
        x = guided + sigma_next * (x - guided) / sigma
    start, end = sigmas[-2], sigmas[-1]
    left_point = copy.deepcopy(state)
    left_point.min_step_ratio = preset.dng_min_step_ratio
    _observe(left_point, denoisers, x_last, end, steps - 1)
    for sigma in torch.logspace(math.log10(start), math.log10(end), substeps + 1, dtype=torch.float64)[1:].tolist():
        _observe(state, denoisers, ray_guided + sigma * (ray_start - ray_guided) / start, sigma, steps - 1)
    return {"sigma": (start, end), "before": posteriors[-2], "one_step": posteriors[-1], "substeps": state.posterior(),
            "left_point": left_point.posterior()}


def _line(name: str, p: torch.Tensor, reference: torch.Tensor | None = None) -> str:
    """Mean p and the share above 0.5; with ``reference`` (the sub-steps' p) the mean distance to it."""
    distance = "" if reference is None else f", mean |p - sub-steps| {float((p - reference).abs().mean()):.4f}"
    return f"  {name:<30} mean {float(p.mean()):.4f}, share above 0.5: {float((p > 0.5).double().mean()):.3f}{distance}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.removal.last_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("runs/removal-mnist-0"),
                        help="the study's folder (ddpm-all/model and ddpm-only0/model in it)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--lambda0", type=float, default=2.0, help="DNG's lambda0 (0: the unguided path)")
    parser.add_argument("--substeps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = load_study_models(args.models / "ddpm-all" / "model", args.models / "ddpm-only0" / "model", None,
                               torch.device("cpu"))
    out = last_step_posteriors(models, args.samples, args.lambda0, args.substeps, seed=args.seed)
    print(f"DDIM-50, {args.samples} samples, lambda0 {args.lambda0:g}; last step sigma {out['sigma'][0]:.4f} -> "
          f"{out['sigma'][1]:.4f}; p:")
    print(_line("at the second-to-last step", out["before"], out["substeps"]))
    print(_line("last step, one trapezoid", out["one_step"], out["substeps"]))
    print(_line(f"last step, {args.substeps} sub-steps", out["substeps"]))
    print(_line("last step, left-point rule", out["left_point"], out["substeps"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
