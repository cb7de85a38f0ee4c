"""diffusers front-end: negguide's guidance modes for StableDiffusion, StableDiffusionXL and StableDiffusion3
pipelines (Python API: :class:`NegGuidePipeline`; CLI: ``python -m negguide.generate``), and as a diffusers guider
for modular pipelines (:class:`NegGuideGuider`).

Needs the ``diffusers`` extra (``pip install 'negguide[diffusers]'``); see docs/diffusers.md.

The names load on first use: ``python -m negguide.generate --help`` imports this package before its CLI, and the
CLI parses its arguments before torch and diffusers are imported (seconds under load).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .. import DNGConfig, GuidanceSpec, SLDConfig, StepWindow
from .scheduler_names import SCHEDULERS, UnsupportedScheduler

# name -> module: these import torch and diffusers
_LAZY = {
    "DEFAULT_CAPTIONER": "captioner", "load_captioner": "captioner",
    "UnsupportedPipeline": "families",
    "NegGuideGuider": "guider",
    "NegGuideOutput": "output",
    "NegGuidePipeline": "pipeline",
    "plot_guidance": "plot",
}

if TYPE_CHECKING:
    from .captioner import DEFAULT_CAPTIONER, load_captioner
    from .families import UnsupportedPipeline
    from .guider import NegGuideGuider
    from .output import NegGuideOutput
    from .pipeline import NegGuidePipeline
    from .plot import plot_guidance


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negguide.generate' has no attribute {name!r}")


__all__ = [
    "DEFAULT_CAPTIONER",
    "DNGConfig",
    "GuidanceSpec",
    "NegGuideGuider",
    "NegGuideOutput",
    "NegGuidePipeline",
    "SCHEDULERS",
    "SLDConfig",
    "StepWindow",
    "UnsupportedPipeline",
    "UnsupportedScheduler",
    "load_captioner",
    "plot_guidance",
]
