"""negguide: precise negative prompting for diffusion models.

The front door: a backend imports what it needs from here (``from negguide import GuidanceRun, GuidanceSpec,
...``); docs/core.md shows a whole backend in 60 lines. The settings names load without torch (the WebUI panel
validates in a process without it); the sampling names import torch on first use.

Settings (torch-free, validated; :class:`SettingsError` lists every problem as a sentence):
``GuidanceSpec`` (the mode and its settings), ``DNGConfig``, ``SLDConfig``, ``AdaptiveStart``, ``ProbeGate``,
``StepWindow``,
``SamplerInfo`` (does a sampler inject noise), ``class_removal_spec``, ``config_to_dict`` / ``config_from_dict``
(a spec: ``GuidanceSpec.to_dict`` / ``from_dict``).

Sampling (one :class:`GuidanceRun` per pass, driven with ``plan`` / ``combine`` / ``finish``): ``GuidanceRun``,
``Plan``, ``Rows``, ``Frame`` (a backend's parametrisation), ``EvaluationClock`` / ``ScheduleClock`` (model
evaluation -> sampler step), ``check_compatible``, ``GuidedDenoiser`` (the same as a ``denoiser(x, sigma)``),
``evaluate_extra_rows`` (rows a backend evaluates outside its own model call), ``probe_generators``.

Extending: ``GuidanceMode`` and ``register_mode`` (one class per mode, :mod:`negguide.modes`), ``make_tracker``
and ``PosteriorTracker`` (DNG's posterior trackers, :mod:`negguide.trackers`), ``draw_passes`` / ``PlottedPass``
(the per-step picture of passes' records, PIL),
``negative_starts`` (per image, the step where its negative first acted: the adaptive window's starts).

What those are made of: :mod:`negguide.guidance` (the rules as pure functions), :mod:`negguide.sld`,
:mod:`negguide.windows` (Ban et al. 2024), :mod:`negguide.posterior` with :mod:`negguide.probes` and
:mod:`negguide.probe_gate` (DNG's trackers), :mod:`negguide.dng` (the per-batch DNG controller),
:mod:`negguide.schedules` (float64 DDPM / k-diffusion tables), :mod:`negguide.checks`.

Front-ends built on it: :mod:`negguide.generate` (diffusers pipelines, a diffusers guider and the CLI),
:mod:`negguide.toy` (the exact Gaussian-mixture study), the WebUI extension ``negguide_webui`` and the ComfyUI
nodes ``negguide_comfyui``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .checks import SettingsError, is_finite_number, raise_problems
from .configs import (
    PROBE_DIRECTIONS,
    TRACKERS,
    VARIANCES,
    AdaptiveStart,
    DNGConfig,
    ProbeGate,
    SLDConfig,
    config_from_dict,
    config_to_dict,
    describe_tracker,
)
from .modes import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, negative_starts
from .modes import register as register_mode
from .records_plot import PlottedPass, draw_passes
from .samplers import SamplerInfo
from .spec import MODES, GuidanceSpec, class_removal_spec
from .windows import UNITS, StepWindow

__version__ = "0.1.0"

# name -> module: these import torch, loaded on first use
_SAMPLING = {
    "GuidanceRun": "run", "Plan": "run", "check_compatible": "run",
    "Frame": "frames",
    "EvaluationClock": "clock", "ScheduleClock": "clock",
    "GuidedDenoiser": "denoiser",
    "evaluate_extra_rows": "extra_rows",
    "probe_generators": "seeds",
    "make_tracker": "trackers",
    "PosteriorTracker": "posterior",
}

if TYPE_CHECKING:
    from .clock import EvaluationClock, ScheduleClock
    from .denoiser import GuidedDenoiser
    from .extra_rows import evaluate_extra_rows
    from .frames import Frame
    from .posterior import PosteriorTracker
    from .run import GuidanceRun, Plan, check_compatible
    from .seeds import probe_generators
    from .trackers import make_tracker


def __getattr__(name: str):
    if name in _SAMPLING:
        value = getattr(import_module(f".{_SAMPLING[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negguide' has no attribute {name!r}")


__all__ = [
    "EMPTY", "MODES", "NEGATIVE", "POSITIVE", "PROBE_DIRECTIONS", "TRACKERS", "UNITS", "VARIANCES", "__version__",
    "AdaptiveStart",
    "check_compatible", "class_removal_spec", "config_from_dict", "config_to_dict", "describe_tracker", "DNGConfig",
    "draw_passes", "evaluate_extra_rows", "EvaluationClock", "Frame", "GuidanceMode", "GuidanceRun", "GuidanceSpec",
    "GuidedDenoiser", "is_finite_number", "make_tracker", "negative_starts", "Plan", "PlottedPass", "PosteriorTracker",
    "probe_generators", "ProbeGate", "raise_problems", "register_mode", "Rows", "SamplerInfo", "ScheduleClock",
    "SettingsError", "SLDConfig", "StepWindow",
]
