"""What DNG needs to know about a sampler: does it inject noise at every step?

The transition-likelihood tracker (DNG paper, Algorithm 2) observes the noise an ancestral / SDE step
injects; deterministic samplers need the probability-flow tracker. The decision is made here, once, for
every front-end: from the sampler's name in any of the programs' spellings (A1111 "Euler a", ComfyUI
"euler_ancestral", diffusers "EulerAncestralDiscreteScheduler") and its noise multiplier ``eta``: an
ancestral sampler at ``eta = 0`` is deterministic, DDIM at ``eta > 0`` is stochastic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Name fragments of samplers that inject fresh noise at every step, in the three programs' spellings.
_STOCHASTIC = re.compile(r"(ancestral|(^|[\s_])a$|\ba\b|sde|ddpm|lcm|restart|seeds)")
# DDIM injects noise only when its eta > 0, and its eta defaults to 0 (A1111, diffusers, ComfyUI alike).
_ETA_DRIVEN = re.compile(r"ddim")


def is_stochastic_name(name: str | None) -> bool:
    """True for ancestral / SDE / DDPM / LCM / Restart samplers, by name (at their default eta)."""
    return bool(_STOCHASTIC.search((name or "").strip().lower()))


@dataclass(frozen=True)
class SamplerInfo:
    """``stochastic``: the sampler's family injects noise; ``eta``: its noise multiplier (1 = full)."""

    stochastic: bool
    eta: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"eta must be a finite number >= 0, got {self.eta}")

    @classmethod
    def from_name(cls, name: str | None, eta: float | None = None) -> SamplerInfo:
        """``eta`` None means the family's default: 1 for ancestral samplers, 0 for DDIM (deterministic)."""
        if _ETA_DRIVEN.search((name or "").lower()):
            return cls(True, 0.0 if eta is None else float(eta))
        return cls(is_stochastic_name(name), 1.0 if eta is None else float(eta))

    @property
    def injects_noise(self) -> bool:
        return self.stochastic and self.eta > 0
