"""The points of a sweep: (method, scale, sampler, steps, p_max), each with the core spec that realises it.

Methods: ``none`` (the unconditional model alone), ``oracle`` (the model retrained without the class, alone:
what removal should reach), ``np`` (``eps_u - lambda (eps_f - eps_u)``, constant lambda), ``sld`` (Safe Latent
Diffusion, guidance scale = scale) and ``dng`` (lambda0 = scale, with p_max).
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
    """Every point of a preset, baselines first (cheap and needed by every plot)."""
    points = []
    for sampler in preset.samplers:
        steps = preset.ddpm_steps if sampler == "ddpm" else preset.ddim_steps
        methods = preset.methods if sampler == "ddpm" else tuple(m for m in preset.methods
                                                                 if m in preset.ddim_methods)
        points.append(Point("none", 0.0, sampler, steps))
        if with_oracle:
            points.append(Point("oracle", 0.0, sampler, steps))
        for method in methods:
            if method == "np":
                points += [Point("np", s, sampler, steps) for s in preset.np_scales]
            elif method == "sld":
                points += [Point("sld", s, sampler, steps) for s in preset.sld_scales]
            else:
                points += [Point("dng", s, sampler, steps, p) for p in preset.dng_p_max for s in preset.dng_lambda0]
    return points


def sampler_settings(point: Point, preset: RemovalPreset) -> SamplerSettings:
    return SamplerSettings(point.sampler, point.steps, preset.sampler_variance)


def transition_variance(preset: RemovalPreset) -> str:
    """DNG's transition-likelihood variance: "matched" is the variance the ancestral sampler injects (beta_tilde
    against a sampler injecting beta gives false alarms: p > 0.5 on samples ending in kept classes)."""
    return preset.sampler_variance if preset.transition_variance == "matched" else preset.transition_variance


def dng_tracker(point: Point, preset: RemovalPreset) -> str:
    """The transition likelihood on the ancestral sampler, the preset's flow tracker on DDIM."""
    return "transition" if point.sampler == "ddpm" else preset.dng_tracker_ddim


def guidance_spec(point: Point, preset: RemovalPreset) -> GuidanceSpec | None:
    """The core's spec of a point (None: the network alone, for ``none`` and ``oracle``)."""
    if point.method in BASELINES:
        return None
    sld = (SLDConfig(threshold=preset.sld_threshold, s_s=preset.sld_s_s, beta_m=preset.sld_beta_m,
                     s_m=preset.sld_s_m) if point.method == "sld" else None)
    dng = (DNGConfig(prior=preset.dng_prior, temperature=preset.dng_temperature, offset=preset.dng_offset,
                     p_max=point.p_max, tracker=dng_tracker(point, preset), variance=transition_variance(preset))
           if point.method == "dng" else None)
    return class_removal_spec(point.method, point.scale, dng, sld)


def point_settings(point: Point, preset: RemovalPreset, models: dict[str, str]) -> dict:
    """Everything that determines a point's images and metrics (the resume key): the point, the settings its
    method reads, the sample count and seed, and the models' hashes."""
    settings = {
        "point": asdict(point),
        "dataset": preset.dataset,
        "removed": preset.removed,
        "samples": preset.samples,
        "seed": preset.seed,
        "sampler_variance": preset.sampler_variance if point.sampler == "ddpm" else None,
        "models": models,
        "fid_networks": list(preset.fid_networks),
        "fid_reference_count": preset.fid_reference_count,
    }
    if point.method == "dng":
        settings["dng"] = {"prior": preset.dng_prior, "temperature": preset.dng_temperature,
                           "offset": preset.dng_offset, "p_max": point.p_max,
                           "tracker": dng_tracker(point, preset),
                           "transition_variance": transition_variance(preset)}
    if point.method == "sld":
        settings["sld"] = {"threshold": preset.sld_threshold, "s_s": preset.sld_s_s, "beta_m": preset.sld_beta_m,
                           "s_m": preset.sld_s_m}
    return settings


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
