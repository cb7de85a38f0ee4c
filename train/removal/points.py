"""The points of a sweep: (method, scale, sampler, steps, p_max), each with the core spec that realises it.

Methods: ``none`` (the unconditional model alone), ``oracle`` (the model retrained without the class, alone:
what removal should reach), ``np`` (``eps_u - lambda (eps_f - eps_u)``, constant lambda), ``sld`` (Safe Latent
Diffusion, guidance scale = scale), ``dng`` (lambda0 = scale, with p_max) and ``np-schedule`` (the ablation: NP
with lambda(k) = the mean over samples of DNG's lambda at step k, from the DNG point with lambda0 = scale and
this p_max; see :mod:`train.removal.schedule`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from negguide import DNGConfig, GuidanceSpec, SLDConfig, class_removal_spec
from train.removal.presets import RemovalPreset
from train.removal.sampler import SamplerSettings

BASELINES = ("none", "oracle")


@dataclass(frozen=True)
class Point:
    method: str
    scale: float
    sampler: str
    steps: int
    p_max: float | None = None  # DNG only

    @property
    def name(self) -> str:
        """A file-name-safe id, unique within a sweep."""
        tail = f"-pmax{self.p_max:g}" if self.p_max is not None else ""
        return f"{self.sampler}{self.steps}-{self.method}-{self.scale:g}{tail}"


def sweep_points(preset: RemovalPreset, with_oracle: bool) -> list[Point]:
    """Every point of a preset, baselines first (cheap and needed by every plot), the np-schedule ablation last
    (it reads finished DNG points)."""
    points, ablation = [], []
    for sampler in preset.samplers:
        steps = preset.ddpm_steps if sampler == "ddpm" else preset.ddim_steps
        methods = preset.sampler_methods(sampler)
        points.append(Point("none", 0.0, sampler, steps))
        if with_oracle:
            points.append(Point("oracle", 0.0, sampler, steps))
        for method in methods:
            if method == "np":
                points += [Point("np", s, sampler, steps) for s in preset.np_scales]
            elif method == "sld":
                points += [Point("sld", s, sampler, steps) for s in preset.sld_scales]
            elif method == "dng":
                points += [Point("dng", s, sampler, steps, p) for p in preset.dng_p_max for s in preset.dng_lambda0]
            else:
                ablation += [Point("np-schedule", s, sampler, steps, preset.schedule_source_p_max)
                             for s in preset.schedule_sources]
    return points + ablation


def schedule_source(point: Point) -> Point:
    """The DNG point whose mean lambda(k) an np-schedule point follows."""
    if point.method != "np-schedule":
        raise ValueError(f"{point.name} is not an np-schedule point")
    return Point("dng", point.scale, point.sampler, point.steps, point.p_max)


def is_decisive(point: Point, preset: RemovalPreset) -> bool:
    """A point the verdicts rest on: the baselines and the preset's decisive scales (np-schedule: when the DNG
    point it follows is decisive)."""
    if preset.decisive_samples is None:
        return False
    if point.method in BASELINES:
        return True
    if point.method == "np":
        return point.scale in preset.decisive_np_scales
    if point.method == "sld":
        return point.scale in preset.decisive_sld_scales
    return point.scale in preset.decisive_dng_lambda0 and point.p_max in preset.decisive_dng_p_max


def point_samples(point: Point, preset: RemovalPreset) -> int:
    """How many samples a point draws: ``decisive_samples`` for a decisive point, else ``samples``."""
    return preset.decisive_samples if is_decisive(point, preset) else preset.samples


def sampler_settings(point: Point, preset: RemovalPreset) -> SamplerSettings:
    return SamplerSettings(point.sampler, point.steps, preset.sampler_variance)


def transition_variance(preset: RemovalPreset) -> str:
    """DNG's transition-likelihood variance: "matched" is the variance the ancestral sampler injects (beta_tilde
    against a sampler injecting beta gives false alarms: p > 0.5 on samples ending in kept classes)."""
    return preset.sampler_variance if preset.transition_variance == "matched" else preset.transition_variance


def dng_tracker(point: Point, preset: RemovalPreset) -> str:
    """The transition likelihood on the ancestral sampler, the preset's flow tracker on DDIM."""
    return "transition" if point.sampler == "ddpm" else preset.dng_tracker_ddim


def np_spec(lam: float) -> GuidanceSpec:
    """2-term NP with w = 1 + lambda: N + w (P - N) = P - lambda (N - P)."""
    return class_removal_spec("np", lam)


def guidance_spec(point: Point, preset: RemovalPreset) -> GuidanceSpec | None:
    """The core's spec of a point (None: the network alone, for ``none`` and ``oracle``). An np-schedule point
    has one NP spec per step, built from its DNG table (:func:`train.removal.schedule.scheduled_specs`)."""
    if point.method in BASELINES:
        return None
    if point.method == "np-schedule":
        raise ValueError("an np-schedule point's specs come from its DNG table (train.removal.schedule)")
    sld = (SLDConfig(threshold=preset.sld_threshold, s_s=preset.sld_s_s, beta_m=preset.sld_beta_m,
                     s_m=preset.sld_s_m) if point.method == "sld" else None)
    dng = (DNGConfig(prior=preset.dng_prior, temperature=preset.dng_temperature, offset=preset.dng_offset,
                     p_max=point.p_max, tracker=dng_tracker(point, preset), variance=transition_variance(preset),
                     min_step_ratio=preset.dng_min_step_ratio)
           if point.method == "dng" else None)
    return class_removal_spec(point.method, point.scale, dng, sld)


def point_settings(point: Point, preset: RemovalPreset, models: dict[str, str]) -> dict:
    """Everything that determines a point's images and metrics (the resume key): the point, the settings its
    method reads, the sample count and seed, the models' hashes, the statistics' resample counts, and for an
    np-schedule point the name and key of the DNG point it follows."""
    from train.removal.paired import RESAMPLES

    settings = {
        "point": asdict(point),
        "dataset": preset.dataset,
        "removed": preset.removed,
        "samples": point_samples(point, preset),
        "seed": preset.seed,
        "sampler_variance": preset.sampler_variance if point.sampler == "ddpm" else None,
        "models": models,
        "fid_networks": list(preset.fid_networks),
        "fid_reference_count": preset.fid_reference_count,
        "resamples": {"labels_kid": RESAMPLES, "fid": preset.fid_resamples},
    }
    if point.method == "np-schedule":
        source = schedule_source(point)
        settings["schedule_source"] = {"name": source.name,
                                       "key": settings_key(point_settings(source, preset, models))}
    if point.method == "dng":
        settings["dng"] = {"prior": preset.dng_prior, "temperature": preset.dng_temperature,
                           "offset": preset.dng_offset, "p_max": point.p_max,
                           "tracker": dng_tracker(point, preset),
                           "transition_variance": transition_variance(preset)}
        if point.sampler == "ddim":  # the flow tracker's rule for steps that shrink sigma several-fold
            settings["dng"]["min_step_ratio"] = preset.dng_min_step_ratio
    if point.method == "sld":
        settings["sld"] = {"threshold": preset.sld_threshold, "s_s": preset.sld_s_s, "beta_m": preset.sld_beta_m,
                           "s_m": preset.sld_s_m}
    return settings


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
