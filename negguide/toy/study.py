"""The toy study behind ``python -m negguide.toy``: runs 3b, 3c and 3d and returns one summary dict."""

from __future__ import annotations

import time

from ..configs import PosteriorConfig
from . import experiments as E
from .experiments import AUTO_DETERMINISTIC
from .low_dimensional import (
    LOW_D_MIXTURES,
    LOW_D_SEEDS,
    LOW_D_STEPS,
    LOW_D_TUNING_SEEDS,
    low_dimensional_runs,
    low_dimensional_study,
)
from .mixture import anisotropic_latent_like, latent_like, three_modes_1d, three_modes_2d
from .progress import Progress

# Scales swept for the class-removal comparisons (the DNG paper uses ~0.5 for NP/SLD and ~5 for DNG).
NP_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SLD_SCALES = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
DNG_SCALES = (0.5, 1.0, 2.0, 5.0, 10.0)

TRACKING_1D = [("ddpm", 1000), ("ddpm", 50), ("ddpm", 20)] + [
    (s, n) for s in ("ddim", "euler", "euler_a", "dpmpp_2m") for n in (50, 20)]
DETERMINISTIC_TRACKERS = ("transition-beta_tilde", "flow-moment", "flow-hutchinson-1",
                          "flow-gated-1+evidence+deflated", "flow-exact")
STOCHASTIC_TRACKER = {"ddpm": "transition-beta", "euler_a": "transition-sampler"}  # the variance it injects
# DDPM also gets beta_tilde, the DNG authors' code's variance, though the sampler injects beta (-> false alarms)
STOCHASTIC_EXTRA_TRACKERS = {"ddpm": ("transition-beta_tilde",)}
HIGH_D_TRACKERS = ("transition-beta_tilde", "flow-moment", "flow-hutchinson-1", "flow-hutchinson-1+evidence",
                   "flow-hutchinson-1+evidence+deflated", "flow-hutchinson-2", "flow-gated-1+evidence",
                   AUTO_DETERMINISTIC, "flow-exact+evidence")
# The default (quick) run: the trackers 'auto' picks and their two simpler alternatives, in 64-D only.
HIGH_D_DEFAULT_TRACKERS = ("transition-beta_tilde", "flow-moment", "flow-hutchinson-1+evidence+deflated",
                           AUTO_DETERMINISTIC)
HIGH_D_MIXTURES = {"isotropic": latent_like, "anisotropic": anisotropic_latent_like}
HIGH_D_SAMPLERS = ("ddim", "euler", "dpmpp_2m")
TUNING_SEED = 0  # the gated tracker's defaults were chosen on mixtures of this seed: reported seeds differ


def _best(rows: list[dict]) -> dict:
    """The setting closest to the ideal remaining-modes distribution."""
    return min(rows, key=lambda r: r["w1_to_target"])


REMOVAL_RUNS = len(NP_SCALES) + len(SLD_SCALES) + len(DNG_SCALES) + 3
REMOVAL_COST = 3  # a removal run's cost per sample, step and dimension against a tracking run's (measured)


def _quiet_progress() -> Progress:
    return Progress(log=lambda line: None)


def removal_study(mix, n: int, steps: int, seed: int, dng_prior: float, progress: Progress | None = None,
                  name: str = "class removal") -> dict:
    """Every method at every scale on one mixture; headline per method = its best W1 to the target."""
    progress = progress or _quiet_progress()
    dng_cfg = PosteriorConfig(prior=dng_prior, temperature=1.0, offset=0.0, p_min=1e-6, p_max=0.99)
    out: dict = {"sweeps": {}, "methods": {}, "lambda_curve": None, "samples": {}}

    def run(method, scale):
        x, state = E.guided_samples(mix, method, scale, n, seed, steps=steps, dng_config=dng_cfg)
        row = {"scale": scale, **E.removal_metrics(mix, x)}
        progress.done(REMOVAL_COST * n * steps * mix.dim, f"{name}, {method} {scale:g}")
        return row, x, state

    for method, scales in (("np", NP_SCALES), ("sld", SLD_SCALES), ("dng_tracked", DNG_SCALES)):
        rows, best_x, best_state = [], None, None
        for scale in scales:
            row, x, state = run(method, scale)
            rows.append(row)
            if row is _best(rows):
                best_x, best_state = x, state
        out["sweeps"][method] = rows
        out["methods"][method] = _best(rows)
        out["samples"][method] = best_x
        if method == "dng_tracked":
            out["lambda_curve"] = best_state["lambda"]
    for method, scale in (("unguided", 0.0), ("cfg", 1.0), ("dng_exact", 1.0)):
        row, x, _ = run(method, scale)
        out["methods"][method] = row
        out["samples"][method] = x
    return out


def trackers_1d(sampler: str) -> tuple[str, ...]:
    """The trackers the 1-D study runs on ``sampler``: a stochastic one's own transition variance first."""
    if sampler in STOCHASTIC_TRACKER:
        return (STOCHASTIC_TRACKER[sampler],) + STOCHASTIC_EXTRA_TRACKERS.get(sampler, ())
    return DETERMINISTIC_TRACKERS


def tracking_weight(n: int) -> float:
    return sum(n * steps * len(trackers_1d(sampler)) for sampler, steps in TRACKING_1D)


def tracking_study(n: int, seed: int, progress: Progress | None = None) -> dict:
    """Every 1-D configuration with its trackers, all on the same trajectories (the sampler has its own seed)."""
    progress = progress or _quiet_progress()
    mix = three_modes_1d()
    table: dict = {}
    for sampler, steps in TRACKING_1D:
        specs = trackers_1d(sampler)
        by_tracker = {}
        for spec in specs:
            by_tracker[spec] = E.track_posterior(mix, sampler, steps, spec, n, seed)
            progress.done(n * steps, f"posterior tracking 1-D, {sampler} {steps} steps, {spec}")
        auto = STOCHASTIC_TRACKER.get(sampler, AUTO_DETERMINISTIC)
        table.setdefault(sampler, {})[str(steps)] = {
            "tracker": auto,
            "mean_abs_error_final": by_tracker[auto]["mean_abs_error_final"],
            "mean_abs_error_time": by_tracker[auto]["mean_abs_error_time"],
            "forbidden_found": by_tracker[auto]["forbidden_found"],
            "false_alarms": by_tracker[auto]["false_alarms"],
            "by_tracker": by_tracker,
        }
    return table


TRACKING_FIELDS = ("mean_abs_error_final", "mean_abs_error_time", "forbidden_found", "false_alarms",
                   "probe_rows_per_image")


def tracking_by_tracker(tracking: dict) -> dict:
    """summary.json's ``posterior_tracking_by_tracker``: sampler -> steps -> tracker -> TRACKING_FIELDS."""
    return {sampler: {steps: {spec: {m: r[m] for m in TRACKING_FIELDS} for spec, r in row["by_tracker"].items()}
                      for steps, row in by_steps.items()}
            for sampler, by_steps in tracking.items()}


def high_dimensional_runs(seeds, dims=(64, 256), steps_list=(20, 50), trackers=HIGH_D_TRACKERS):
    """(kind, dim, seed, steps, sampler, tracker) of every run of the high-dimensional study."""
    runs = [(sampler, spec) for sampler in HIGH_D_SAMPLERS for spec in trackers]
    runs.append(("euler_a", "transition-sampler"))
    return [(kind, dim, seed, steps, sampler, spec) for kind in HIGH_D_MIXTURES for dim in dims for seed in seeds
            for steps in steps_list for sampler, spec in runs]


def high_dimensional_study(n: int, seeds, dims=(64, 256), steps_list=(20, 50), trackers=HIGH_D_TRACKERS,
                           progress: Progress | None = None) -> list[dict]:
    """Every tracker on 10-class mixtures (isotropic and anisotropic, several seeds) with the deterministic
    samplers, plus Euler ancestral with the transition tracker."""
    progress = progress or _quiet_progress()
    rows = []
    for kind, make in HIGH_D_MIXTURES.items():
        for dim in dims:
            for seed in seeds:
                mix = make(dim, seed=seed)
                for steps in steps_list:
                    runs = [(sampler, spec) for sampler in HIGH_D_SAMPLERS for spec in trackers]
                    for sampler, spec in runs + [("euler_a", "transition-sampler")]:
                        r = E.track_posterior(mix, sampler, steps, spec, n, seed)
                        progress.done(n * steps * dim, f"posterior tracking {kind} {dim}-D, seed {seed}, {sampler} "
                                                       f"{steps} steps, {spec}")
                        r.pop("curves")
                        rows.append({"mixture": kind, "dim": dim, "seed": seed, **r})
    return rows


def tracker_table(rows: list[dict]) -> list[dict]:
    """Per tracker, over every mixture, seed, sampler and step count: mean and worst end error, how many
    configurations stay <= 0.03, average probe rows, forbidden samples found and false alarms."""
    out = []
    for spec in dict.fromkeys(r["tracker"] for r in rows):
        mine = [r for r in rows if r["tracker"] == spec]
        errors = [r["mean_abs_error_final"] for r in mine]
        found = [r["forbidden_found"] for r in mine if r["forbidden_found"] == r["forbidden_found"]]
        out.append({
            "tracker": spec, "configurations": len(mine),
            "mean_error": sum(errors) / len(errors), "worst_error": max(errors),
            "within_0.03": sum(e <= 0.03 for e in errors),
            "average_probe_rows": sum(r["average_probe_rows"] for r in mine) / len(mine),
            "forbidden_found": sum(found) / max(1, len(found)),
            "false_alarms": sum(r["false_alarms"] for r in mine) / len(mine),
            "worst_false_alarms": max(r["false_alarms"] for r in mine),
        })
    return out


def run_study(full: bool = False, seed: int = 0, log=print) -> tuple[dict, dict]:
    """Returns (summary for JSON, arrays for plots)."""
    sizes = ({"removal_1d": 100_000, "steps_1d": 1000, "removal_2d": 20_000, "steps_2d": 1000, "tracking": 20_000,
              "high_d": 300, "low_d": 20_000}
             if full else
             {"removal_1d": 2_000, "steps_1d": 100, "removal_2d": 1_000, "steps_2d": 100, "tracking": 1_000,
              "high_d": 300, "low_d": 1_000})
    high_d_seeds, high_d_steps = ((1, 2, 3, 4), (20, 50)) if full else ((1,), (20,))
    high_d_dims, high_d_trackers = ((64, 256), HIGH_D_TRACKERS) if full else ((64,), HIGH_D_DEFAULT_TRACKERS)
    low_d_seeds, low_d_steps = (LOW_D_SEEDS, LOW_D_STEPS) if full else (LOW_D_SEEDS[:1], LOW_D_STEPS[-1:])
    t0 = time.time()
    mix1, mix2 = three_modes_1d(), three_modes_2d()
    progress = Progress(log)
    progress.plan(REMOVAL_COST * REMOVAL_RUNS * sizes["removal_1d"] * sizes["steps_1d"] * mix1.dim)
    progress.plan(REMOVAL_COST * REMOVAL_RUNS * sizes["removal_2d"] * sizes["steps_2d"] * mix2.dim)
    progress.plan(tracking_weight(sizes["tracking"]))
    progress.plan(sum(sizes["high_d"] * steps * dim for _, dim, _, steps, _, _ in
                      high_dimensional_runs(high_d_seeds, high_d_dims, high_d_steps, high_d_trackers)))
    progress.plan(sum(sizes["low_d"] * steps * LOW_D_MIXTURES[name](seed).dim
                      for name, seed, steps, _, _ in low_dimensional_runs(low_d_seeds, low_d_steps)))
    log(f"[toy] {'full' if full else 'default'} size: class removal on 1-D and 2-D mixtures, posterior tracking "
        "in 1-D, 1-3-D multi-mode and 64/256-D (progress below, the estimate settles after the first minutes)")
    removal = removal_study(mix1, sizes["removal_1d"], sizes["steps_1d"], seed, mix1.prior_forbidden, progress,
                            "class removal 1-D")
    removal_2d = removal_study(mix2, sizes["removal_2d"], sizes["steps_2d"], seed, mix2.prior_forbidden, progress,
                               "class removal 2-D")
    tracking = tracking_study(sizes["tracking"], seed, progress)
    high_d = high_dimensional_study(sizes["high_d"], high_d_seeds, high_d_dims, high_d_steps, high_d_trackers,
                                    progress)
    low_d = low_dimensional_study(sizes["low_d"], low_d_seeds, low_d_steps, progress=progress)

    def strip(study):
        return {"methods": study["methods"], "sweeps": study["sweeps"]}

    summary = {
        "settings": {"full": full, "seed": seed, **sizes,
                     "schedule": "linear betas 1e-4..0.02, T=1000",
                     "dng_tracked": "transition tracker (Alg. 2, variance beta), tau=1, delta=0, prior=true weight",
                     "headline": "each method at the scale of its sweep with the lowest w1_to_target"},
        "methods": removal["methods"],
        "sweeps": removal["sweeps"],
        "class_removal_2d": strip(removal_2d),
        "posterior_tracking": {s: {k: {kk: vv for kk, vv in v.items() if kk != "by_tracker"}
                                   for k, v in d.items()} for s, d in tracking.items()},
        "posterior_tracking_by_tracker": tracking_by_tracker(tracking),
        "high_dimensional_tracking": high_d,
        "high_dimensional_tracking_by_tracker": tracker_table(high_d),
        "high_dimensional_settings": {"samples": sizes["high_d"], "seeds": list(high_d_seeds),
                                      "tuning_seed": TUNING_SEED, "classes": 10, "forbidden": "class 0",
                                      "mixtures": list(HIGH_D_MIXTURES), "dims": list(high_d_dims),
                                      "steps": list(high_d_steps), "trackers": list(high_d_trackers)},
        "low_dimensional_tracking": low_d,
        "low_dimensional_settings": {"samples": sizes["low_d"], "seeds": list(low_d_seeds),
                                     "tuning_seeds": list(LOW_D_TUNING_SEEDS), "mixtures": list(LOW_D_MIXTURES),
                                     "steps": list(low_d_steps)},
        "seconds": round(time.time() - t0, 1),
    }
    arrays = {"mix1": mix1, "removal": removal, "mix2": mix2, "removal_2d": removal_2d, "tracking": tracking,
              "high_d": high_d}
    return summary, arrays
