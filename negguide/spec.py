"""What one generation asks of negguide: the mode and its settings, validated in one place.

Modes (each a rule of :mod:`negguide.guidance`; ``P``, ``N``, ``E`` = positive, negative, empty prompt
predictions, ``w`` = ``cfg_scale``):

==========  =====================================================  ==============================================
mode        guided prediction                                      source
==========  =====================================================  ==============================================
``np``      ``N + w (P - N)`` inside ``window``, ``E + w (P - E)``  negative prompt, 2-term (what the WebUIs and
            outside (no window: every step, i.e. stock)            diffusers do); Ban et al. 2024's windows
``np3``     ``E + w (P - N)`` inside ``window``, CFG outside       3-term form, Desai & Vasconcelos Eq. 4
``dns``     ``E + s (E - P)``, ``s = dns_scale`` (default w - 1)   Desai & Vasconcelos Eq. 19
``dng``     ``E + w (P - E) - lambda (N - P)``, per-image lambda   Koulischer et al. 2025 (Sec. 4.2 / Eq. 10)
``sld``     ``E + w (P - E - gamma)`` in eps units                 Safe Latent Diffusion (Schramowski et al.)
``perp_neg``  ``E + w (P - E - w_n perp(N - E, P - E))``           Perp-Neg (Armandpour et al. 2023)
``np_lambda``  ``E + w (P - E) - lambda (N - P)``, constant lambda  the DNG paper's NP for text-to-image (Eq. 6)
``adaptive``  ``np`` from a per-image start a signal decides, to   Ban et al. 2024, Sec. 6 (the critical step)
            the window's end (``adaptive``: the signal)
==========  =====================================================  ==============================================

``class_removal=True`` is the DNG paper's unconditional setting: the "positive" branch is the unconditional
model, there is no prompt and no empty branch (``E`` is ``P``), so ``dng`` reads ``P - lambda (N - P)`` and
``np`` reads ``P - (w - 1) (N - P)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .checks import SettingsError, is_finite_number, raise_problems
from .configs import AdaptiveStart, DNGConfig, SLDConfig, config_from_dict, config_to_dict
from .modes import MODE_CLASSES, GuidanceMode
from .windows import StepWindow

MODES = tuple(MODE_CLASSES)  # the built-in modes (a mode registered later is valid too)
MAX_CFG_SCALE = 100.0


@dataclass(frozen=True)
class GuidanceSpec:
    mode: str = "np"
    cfg_scale: float = 7.0
    window: StepWindow | None = None  # np / np3: the steps where the negative acts (None: every step)
    dns_scale: float | None = None  # dns: s; None means cfg_scale - 1, what CFG with swapped prompts realises
    dng: DNGConfig = field(default_factory=DNGConfig)
    sld: SLDConfig = field(default_factory=SLDConfig)
    perp_neg_scale: float = 1.0
    negative_scale: float = 1.0  # np_lambda: the constant lambda of E + w (P - E) - lambda (N - P)
    adaptive: AdaptiveStart = field(default_factory=AdaptiveStart)  # adaptive: when each image's negative starts
    class_removal: bool = False

    def __post_init__(self):
        if self.mode not in MODE_CLASSES:
            raise SettingsError([f"mode must be one of {tuple(MODE_CLASSES)}, got {self.mode!r}"])
        mode = MODE_CLASSES[self.mode]
        windowed = tuple(name for name, cls in MODE_CLASSES.items() if cls.windowed)
        raise_problems([
            (is_finite_number(self.cfg_scale) and 0 <= float(self.cfg_scale) <= MAX_CFG_SCALE,
             f"CFG scale must be a number in [0, {MAX_CFG_SCALE:g}], got {self.cfg_scale!r}"),
            (self.dns_scale is None or (is_finite_number(self.dns_scale) and 0 <= float(self.dns_scale) <= 100),
             f"DNS scale must be a number in [0, 100], got {self.dns_scale!r}"),
            (is_finite_number(self.perp_neg_scale) and float(self.perp_neg_scale) >= 0,
             f"Perp-Neg scale must be a number >= 0, got {self.perp_neg_scale!r}"),
            (is_finite_number(self.negative_scale) and 0 <= float(self.negative_scale) <= 100,
             f"negative scale (lambda) must be a number in [0, 100], got {self.negative_scale!r}"),
            (self.window is None or mode.windowed, f"a step window applies to the modes {windowed}, not to "
                                                   f"{self.mode!r}"),
            (not (self.class_removal and mode.needs_prompt),
             f"mode {self.mode!r} needs a prompt: it has no meaning for class removal"),
        ])

    def guidance_mode(self) -> GuidanceMode:
        """A fresh :class:`~negguide.modes.base.GuidanceMode` of this spec: what it reads and how it combines (a
        run keeps its own, which holds the mode's state for the pass)."""
        return MODE_CLASSES[self.mode](self)

    @property
    def empty_branch(self) -> str:
        """The branch that plays the empty prompt's part (the unconditional model in class removal)."""
        return "positive" if self.class_removal else "empty"

    @property
    def resolved_dns_scale(self) -> float:
        return float(self.cfg_scale) - 1.0 if self.dns_scale is None else float(self.dns_scale)

    def to_dict(self) -> dict:
        """The settings that matter for the spec's mode, JSON-serialisable: ``mode``, ``cfg_scale`` and the mode's
        own fields (a window with its description, DNS's resolved scale); ``class_removal`` when set.
        :meth:`from_dict` reads it back."""
        out = {"mode": self.mode, "cfg_scale": self.cfg_scale}
        for name in MODE_CLASSES[self.mode].settings:
            value = getattr(self, name)
            if name == "window":
                value = None if value is None else {**config_to_dict(value), "describe": value.describe()}
            elif name == "dns_scale":
                value = self.resolved_dns_scale
            elif name in ("dng", "sld", "adaptive"):
                value = config_to_dict(value)
            out[name] = value
        if self.class_removal:
            out["class_removal"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> GuidanceSpec:
        """The spec a :meth:`to_dict` dict describes (fields it does not name keep their defaults)."""
        window = data.get("window")
        if window is not None:
            window = StepWindow(window["start"], window["end"], window.get("unit", "step"))
        return cls(data["mode"], data["cfg_scale"], window=window, dns_scale=data.get("dns_scale"),
                   dng=config_from_dict(DNGConfig, data.get("dng") or {}),
                   sld=config_from_dict(SLDConfig, data.get("sld") or {}),
                   perp_neg_scale=data.get("perp_neg_scale", 1.0), negative_scale=data.get("negative_scale", 1.0),
                   adaptive=config_from_dict(AdaptiveStart, data.get("adaptive") or {}),
                   class_removal=data.get("class_removal", False))


CLASS_REMOVAL_METHODS = ("np", "sld", "dng")


def class_removal_spec(method: str, scale: float, dng: DNGConfig | None = None,
                       sld: SLDConfig | None = None) -> GuidanceSpec:
    """The DNG paper's class-removal setting (Sec. 4.1): the "positive" branch is the unconditional model, the
    "negative" one the model of the class to remove. ``scale`` is the method's own parameter: ``np``'s constant
    lambda (2-term NP with ``w = 1 + lambda``: ``P - lambda (N - P)``), ``sld``'s guidance scale, ``dng``'s lambda0
    (its other settings from ``dng``)."""
    if method == "np":
        return GuidanceSpec("np", cfg_scale=1.0 + scale, class_removal=True)
    if method == "sld":
        return GuidanceSpec("sld", cfg_scale=scale, sld=sld or SLDConfig(), class_removal=True)
    if method == "dng":
        return GuidanceSpec("dng", cfg_scale=1.0, dng=replace(dng or DNGConfig(), lambda0=scale), class_removal=True)
    raise SettingsError([f"class removal compares the methods {CLASS_REMOVAL_METHODS}, got {method!r}"])
