"""The one tracker factory: the DNG posterior tracker a :class:`~negguide.configs.DNGConfig` names for a sampler.

Every user of a tracker builds it here (:class:`negguide.dng.DynamicNegativeGuidance`, the toy study, the
class-removal study), so a tracker name means the same tracker, with the same defaults, everywhere.
"""

from __future__ import annotations

import torch

from .configs import DNGConfig, PosteriorConfig
from .posterior import FlowTracker, PosteriorTracker, TransitionTracker
from .samplers import SamplerInfo

FLOW_DIVERGENCES = {"flow-moment": "moment", "flow-hutchinson": "hutchinson", "flow-gated": "gated"}


def make_tracker(config: DNGConfig, sampler: SamplerInfo, batch_size: int, device=None,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 posterior: PosteriorConfig | None = None) -> PosteriorTracker:
    """The tracker ``config.resolved_tracker(sampler)`` names, for ``batch_size`` images, its state on ``device``;
    ``generator``: the Hutchinson probes' (one, or one per image); ``posterior``: the posterior's prior, temperature,
    offset and clamps, instead of ``config.posterior`` (the toy's exact-Bayes settings)."""
    name = config.resolved_tracker(sampler)
    posterior = posterior or config.posterior
    if name == "transition":
        variance = config.variance
        if variance == "sampler" and not sampler.injects_noise:
            variance = "beta"  # a deterministic step injects nothing to compare with: the paper's choice
        return TransitionTracker(posterior, batch_size, device, variance=variance,
                                 eta=min(sampler.eta, 1.0) if sampler.injects_noise else 1.0)
    return FlowTracker(posterior, batch_size, device, divergence=FLOW_DIVERGENCES[name], probe_pairs=config.probe_pairs,
                       generator=generator, start=config.flow_start, gate=config.gate,
                       directions=config.probe_directions, min_step_ratio=config.min_step_ratio)
