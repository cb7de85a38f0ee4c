"""The three studies of the toy job, each a function returning plain numbers (and arrays for plots).

* :func:`guided_samples` / :func:`removal_metrics`  3b, 3d: sample with NP / SLD / DNG and measure how much
  forbidden mass remains and how far the result is from the ideal "remaining modes" distribution.
* :func:`track_posterior`  3c: follow unguided trajectories of a sampler and compare a tracker's posterior
  with the exact one.
"""

from __future__ import annotations

import math

import torch

from ..configs import DEFAULT_MIN_STEP_RATIO, DNGConfig, PosteriorConfig, ProbeGate, SLDConfig
from ..denoiser import GuidedDenoiser, evaluate_per_branch
from ..frames import Frame
from ..posterior import FlowTracker, PosteriorTracker
from ..run import GuidanceRun
from ..samplers import SamplerInfo
from ..schedules import DiscreteSchedule, karras_sigmas
from ..spec import GuidanceSpec, class_removal_spec
from ..trackers import make_tracker as make_core_tracker
from .mixture import GaussianMixture
from .samplers import SAMPLERS, STOCHASTIC

SCHEDULE = DiscreteSchedule.from_kind("linear", 1000, 1e-4, 0.02)  # the MNIST/CIFAR DDPMs' schedule
KARRAS_SAMPLERS = {"euler", "euler_a", "dpmpp_2m"}  # the WebUI's usual pairing


def sigmas_for(sampler: str, steps: int) -> torch.Tensor:
    """Noise levels of a run: DDPM timesteps evenly spaced for ddpm/ddim, Karras for the others; then 0."""
    table = SCHEDULE.sigmas
    if sampler in KARRAS_SAMPLERS:
        return karras_sigmas(steps, float(table[0]), float(table[-1]))
    t = torch.linspace(SCHEDULE.num_timesteps - 1, 0, steps, dtype=torch.float64).round().long()
    return torch.cat([table[t], torch.zeros(1, dtype=torch.float64)])


def initial_state(mix: GaussianMixture, sigma_max: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Exact draw from the noised marginal at the first noise level."""
    x0, _ = mix.sample(n, gen)
    return x0 + sigma_max * torch.randn(x0.shape, dtype=torch.float64, generator=gen)


def run_sampler(sampler: str, model, x, sigmas, gen):
    return SAMPLERS[sampler](model, x, sigmas, gen)


# ------------------------------------------------------------------------------------------------- 3b / 3d
class ExactPosterior(PosteriorTracker):
    """An oracle DNG tracker: the exact ``p(forbidden | x_sigma)`` of the mixture at the current state."""

    name = "exact"

    def __init__(self, mix: GaussianMixture, batch_size: int, p_max: float = 1 - 1e-12):
        super().__init__(batch_size)
        self.mix, self.log_odds_max = mix, math.log(p_max / (1 - p_max))
        self.log_odds = None

    def observe(self, x, sigma, denoised_ref, denoised_neg, probe_predictions=None):
        self.log_odds = self.mix.log_odds_forbidden(x, sigma).clamp(max=self.log_odds_max)
        self.observed_steps += 1

    def odds(self) -> torch.Tensor:
        return self.log_odds.exp() if self.log_odds is not None else torch.tensor(0.0, dtype=torch.float64)

    def posterior(self) -> torch.Tensor:
        return torch.sigmoid(self.log_odds)

    def finish(self, x, sigma_final=0.0):
        self.observe(x, sigma_final, None, None)


def _spec(method: str, scale: float, dng_config: PosteriorConfig, sld_config: SLDConfig | None) -> GuidanceSpec:
    """The core's spec of one method; ``scale`` is the method's own parameter (NP: lambda, SLD: its guidance
    scale, DNG: lambda0, CFG toward the kept modes: w)."""
    if method == "cfg":  # CFG toward the remaining modes (positive branch) away from the full model
        return GuidanceSpec("np", cfg_scale=scale)
    dng = DNGConfig(prior=dng_config.prior, temperature=dng_config.temperature, offset=dng_config.offset,
                    p_min=dng_config.p_min, p_max=dng_config.p_max, tracker="transition", variance="beta")
    return class_removal_spec("dng" if method.startswith("dng") else method, scale, dng, sld_config)


def guided_model(mix: GaussianMixture, method: str, scale: float, n: int, steps: int,
                 dng_config: PosteriorConfig | None = None, sld_config: SLDConfig | None = None):
    """The denoiser a sampler calls for one guidance method (through the core's :class:`GuidanceRun`),
    and the run (None when unguided)."""
    if method == "unguided":
        return (lambda x, sigma, step: mix.denoise(x, sigma)), None
    if method not in ("cfg", "np", "sld", "dng_exact", "dng_tracked"):
        raise ValueError(f"unknown method {method!r}")
    dng_config = dng_config or PosteriorConfig(prior=mix.prior_forbidden, p_max=0.99)
    # class removal: "positive" is the unconditional model, "negative" the model of the forbidden modes;
    # CFG toward the kept modes puts the kept modes in the positive slot and the full model in the negative
    models = ({"positive": mix.remembered(), "negative": mix} if method == "cfg"
              else {"positive": mix, "negative": mix.to_forget()})
    oracle = ExactPosterior(mix, n) if method == "dng_exact" else None
    run = GuidanceRun(_spec(method, scale, dng_config, sld_config), n, Frame.k_diffusion(), SamplerInfo(True),
                      steps=steps, record="mean", tracker=oracle)

    denoisers = {branch: model.denoise for branch, model in models.items()}

    def branch_model(x, sigma, layout):
        return evaluate_per_branch(x, sigma, layout, denoisers)

    return GuidedDenoiser(run, branch_model), run


def guided_samples(mix: GaussianMixture, method: str, scale: float, n: int, seed: int, steps: int = 1000,
                   sampler: str = "ddpm", dng_config: PosteriorConfig | None = None,
                   sld_config: SLDConfig | None = None):
    """Samples of one method and the mean lambda per step (DNG; empty otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    sigmas = sigmas_for(sampler, steps)
    model, run = guided_model(mix, method, scale, n, steps, dng_config, sld_config)
    x = run_sampler(sampler, model, initial_state(mix, float(sigmas[0]), n, gen), sigmas, gen)
    lambdas = []
    if run is not None:
        run.finish(x)
        lambdas = [r["lambda"] for r in run.records if "lambda" in r]
    return x, {"lambda": lambdas}


def w1_1d(samples: torch.Tensor, target: GaussianMixture, grid_points: int = 20001) -> float:
    """Exact Wasserstein-1 between an empirical 1-D sample and a mixture: the integral of |F_n - F|."""
    s = samples.reshape(-1).sort().values
    lo = min(float(s[0]), float((target.means - 6 * target.variances.sqrt()[:, None]).min()))
    hi = max(float(s[-1]), float((target.means + 6 * target.variances.sqrt()[:, None]).max()))
    grid = torch.linspace(lo, hi, grid_points, dtype=torch.float64)
    f_emp = torch.searchsorted(s, grid, right=True).to(torch.float64) / s.numel()
    return float(torch.trapezoid((f_emp - target.cdf_1d(grid)).abs(), grid))


def sliced_w1(samples: torch.Tensor, target: GaussianMixture, directions: int = 64, seed: int = 0) -> float:
    """Sliced W1: mean over random directions of the exact 1-D W1 of the projections (an isotropic
    mixture projects onto a mixture with projected means and the same variances)."""
    if samples.shape[1] == 1:
        return w1_1d(samples, target)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(directions, samples.shape[1], dtype=torch.float64, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    total = 0.0
    for d in u:
        proj = GaussianMixture(target.weights, (target.means @ d)[:, None], target.variances, target.forbidden)
        total += w1_1d(samples @ d, proj, grid_points=4001)
    return total / directions


def removal_metrics(mix: GaussianMixture, x0: torch.Tensor) -> dict:
    """forbidden_mass: share of samples the exact data-level classifier assigns to the forbidden concept;
    w1_to_target: (sliced) W1 of all samples to the remaining-modes distribution; distortion: the same for the
    samples outside the forbidden concept only (how much the kept modes were bent)."""
    in_forbidden = mix.posterior_forbidden(x0, 0.0) > 0.5
    keep = mix.remembered()
    kept = x0[~in_forbidden]
    return {
        "forbidden_mass": float(in_forbidden.double().mean()),
        "w1_to_target": sliced_w1(x0, keep),
        "distortion": sliced_w1(kept, keep) if kept.shape[0] > 10 else float("nan"),
    }


# ------------------------------------------------------------------------------------------------------ 3c
def _flow(tracker: str, pairs: int = 1, start: str = "prior", directions: str = "rademacher",
          min_step_ratio: float = DEFAULT_MIN_STEP_RATIO) -> dict:
    return {"tracker": tracker, "probe_pairs": pairs, "flow_start": start, "probe_directions": directions,
            "min_step_ratio": min_step_ratio}


# The trackers of the studies, by the name the summary and docs/dng-tracking.md's tables give them, in the core's own
# settings (DNGConfig's vocabulary, built by negguide.trackers.make_tracker). "flow-exact": the flow tracker with the
# mixture's exact divergence, an oracle no DNGConfig names.
STUDY_TRACKERS = {
    "transition-beta": {"tracker": "transition", "variance": "beta"},
    "transition-beta_tilde": {"tracker": "transition", "variance": "beta_tilde"},
    "transition-sampler": {"tracker": "transition", "variance": "sampler"},
    "flow-moment": _flow("flow-moment"),
    "flow-hutchinson-1": _flow("flow-hutchinson"),
    "flow-hutchinson-1+deflated": _flow("flow-hutchinson", directions="deflated"),
    "flow-hutchinson-1+evidence": _flow("flow-hutchinson", start="evidence"),
    "flow-hutchinson-1+evidence+deflated": _flow("flow-hutchinson", start="evidence", directions="deflated"),
    "flow-hutchinson-2": _flow("flow-hutchinson", pairs=2),
    "flow-gated-1": _flow("flow-gated"),
    "flow-gated-1+deflated": _flow("flow-gated", directions="deflated"),
    "flow-gated-1+evidence": _flow("flow-gated", start="evidence"),
    "flow-gated-1+evidence+deflated": _flow("flow-gated", start="evidence", directions="deflated"),
    # the same with the trapezoid on every step, DDIM's coarse last step included (DNGConfig.min_step_ratio)
    "flow-gated-1+evidence+deflated+trapezoid": _flow("flow-gated", start="evidence", directions="deflated",
                                                      min_step_ratio=0.0),
    "flow-exact": {"flow_start": "prior"},
    "flow-exact+evidence": {"flow_start": "evidence"},
}
EXACT_DIVERGENCE = ("flow-exact", "flow-exact+evidence")
AUTO_DETERMINISTIC = "flow-gated-1+evidence+deflated"  # what DNGConfig(tracker="auto") runs on deterministic samplers


def make_tracker(name: str, config: PosteriorConfig, n: int, mix: GaussianMixture, seed: int,
                 gate: ProbeGate | None = None) -> PosteriorTracker:
    """The study's tracker ``name`` (a key of :data:`STUDY_TRACKERS`) for ``n`` samples, with the posterior
    settings ``config`` and, for the gated tracker, ``gate``. A transition tracker models the variance its name
    says at eta 1, whatever the sampler injects (the study measures what a mismatch costs)."""
    if name not in STUDY_TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; the study's trackers: {', '.join(STUDY_TRACKERS)}")
    settings = DNGConfig(**STUDY_TRACKERS[name], **({"gate": gate} if gate is not None else {}))
    if name in EXACT_DIVERGENCE:
        forget = mix.to_forget()
        return FlowTracker(config, n, divergence="exact", start=settings.flow_start, exact_divergence=lambda x, s: (
            forget.divergence_of_denoiser(x, s) - mix.divergence_of_denoiser(x, s)))
    return make_core_tracker(settings, SamplerInfo(True), n, generator=torch.Generator().manual_seed(seed + 17),
                             posterior=config)


def track_posterior(mix: GaussianMixture, sampler: str, steps: int, tracker_name: str, n: int, seed: int,
                    config: PosteriorConfig | None = None, gate: ProbeGate | None = None) -> dict:
    """Unguided trajectories; tracked vs exact ``p(forbidden | x)`` at every step and at the end (``tracker_name``:
    a key of :data:`STUDY_TRACKERS`)."""
    config = config or PosteriorConfig(prior=mix.prior_forbidden, temperature=1.0, offset=0.0,
                                       p_min=1e-12, p_max=1 - 1e-9)
    gen = torch.Generator().manual_seed(seed)
    sigmas = sigmas_for(sampler, steps)
    forget = mix.to_forget()
    tracker = make_tracker(tracker_name, config, n, mix, seed, gate)
    tracked, exact = [], []

    def model(x, sigma, step):
        d_u, d_c = mix.denoise(x, sigma), forget.denoise(x, sigma)
        request, at = tracker.probe_points(x, sigma, step), None
        if request is not None:
            pts = request.points
            flat = pts.reshape(-1, x.shape[1])
            at = (request.directions, mix.denoise(flat, sigma).reshape(pts.shape),
                  forget.denoise(flat, sigma).reshape(pts.shape))
        tracker.observe(x, sigma, d_u, d_c, probe_predictions=at)
        tracked.append(tracker.posterior())
        exact.append(mix.posterior_forbidden(x, sigma))
        return d_u

    x = run_sampler(sampler, model, initial_state(mix, float(sigmas[0]), n, gen), sigmas, gen)
    tracker.finish(x)
    tracked.append(tracker.posterior())
    exact.append(mix.posterior_forbidden(x, 0.0))
    tracked, exact = torch.stack(tracked), torch.stack(exact)  # [steps + 1, n]
    ends_forbidden = exact[-1] > 0.5
    err = (tracked - exact).abs()
    return {
        "sampler": sampler,
        "steps": steps,
        "tracker": tracker_name,
        "stochastic_sampler": sampler in STOCHASTIC,
        "probe_rows_per_image": 2 * tracker.probe_pairs,  # at a step where the image probes
        "average_probe_rows": tracker.average_probe_rows(),
        "mean_abs_error_final": float(err[-1].mean()),
        "mean_abs_error_time": float(err.mean()),
        "forbidden_found": float((tracked[-1][ends_forbidden] > 0.5).double().mean()) if ends_forbidden.any()
        else float("nan"),
        "forbidden_samples": int(ends_forbidden.sum()),  # the found share's denominator (for its interval)
        "false_alarms": float((tracked[-1][~ends_forbidden] > 0.5).double().mean()),
        "curves": {
            "sigma": torch.cat([sigmas[:-1], sigmas[-1:]]).tolist(),
            "tracked_forbidden": tracked[:, ends_forbidden].mean(1).tolist(),
            "exact_forbidden": exact[:, ends_forbidden].mean(1).tolist(),
            "tracked_allowed": tracked[:, ~ends_forbidden].mean(1).tolist(),
            "exact_allowed": exact[:, ~ends_forbidden].mean(1).tolist(),
        },
    }
