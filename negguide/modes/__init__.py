"""The guidance modes: one :class:`~negguide.modes.base.GuidanceMode` class per mode, by the name a
:class:`negguide.spec.GuidanceSpec` gives (see :mod:`negguide.modes.base` for what a mode declares and does).

A new mode is one file here with its class, registered below (or by :func:`register` from outside the package),
and its tests; :class:`negguide.run.GuidanceRun` and the front-ends read everything else from the class.
"""

from __future__ import annotations

from .adaptive_window import AdaptiveWindow, negative_starts
from .base import BRANCHES, EMPTY, NEGATIVE, POSITIVE, GuidanceMode, PassContext, Rows, Slots
from .constant_negative import ConstantNegative
from .diffusion_negative import DiffusionNegative
from .dynamic_negative import DynamicNegative
from .negative_prompt import NegativePrompt
from .perp_neg import PerpNeg
from .safe_latent import SafeLatent
from .three_term import ThreeTermNegativePrompt

MODE_CLASSES: dict[str, type[GuidanceMode]] = {}


def register(cls: type[GuidanceMode]) -> type[GuidanceMode]:
    """Make a mode class known to :class:`~negguide.spec.GuidanceSpec` under ``cls.name`` (usable as a decorator)."""
    MODE_CLASSES[cls.name] = cls
    return cls


for _cls in (NegativePrompt, ThreeTermNegativePrompt, DiffusionNegative, DynamicNegative, SafeLatent, PerpNeg,
             ConstantNegative, AdaptiveWindow):
    register(_cls)

__all__ = ["BRANCHES", "EMPTY", "MODE_CLASSES", "NEGATIVE", "POSITIVE", "AdaptiveWindow", "ConstantNegative",
           "DiffusionNegative", "DynamicNegative", "GuidanceMode", "NegativePrompt", "PassContext", "PerpNeg", "Rows",
           "SafeLatent", "Slots", "ThreeTermNegativePrompt", "negative_starts", "register"]
