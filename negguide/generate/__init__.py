"""diffusers front-end: negguide's guidance modes for StableDiffusion, StableDiffusionXL and StableDiffusion3
pipelines (Python API: :class:`NegGuidePipeline`; CLI: ``python -m negguide.generate``), and as a diffusers guider
for modular pipelines (:class:`NegGuideGuider`).

Needs the ``diffusers`` extra (``pip install 'negguide[diffusers]'``); see docs/diffusers.md.
"""

from .. import DNGConfig, GuidanceSpec, SLDConfig, StepWindow
from .captioner import DEFAULT_CAPTIONER, load_captioner
from .families import UnsupportedPipeline
from .guider import NegGuideGuider
from .output import NegGuideOutput
from .pipeline import NegGuidePipeline
from .plot import plot_guidance
from .schedulers import SCHEDULERS, UnsupportedScheduler

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
