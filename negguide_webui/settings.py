"""The panel's settings: one dataclass, its validation, and its infotext form.

The order of :data:`ARG_NAMES` is the order of the panel's components, which is also the order of the
``args`` list in an API request's ``alwayson_scripts`` entry. Never reorder it; append new fields at the end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from negguide.windows import StepWindow

MODE_OFF = "Off"
MODE_WINDOWED = "Windowed negative prompt"
MODE_DNG = "Dynamic negative guidance (DNG)"
MODE_DNS = "Diffusion-negative sample (DNS)"
MODES = (MODE_OFF, MODE_WINDOWED, MODE_DNG, MODE_DNS)
# short names, accepted from the API / infotext as well
MODE_KEYS = {MODE_OFF: "off", MODE_WINDOWED: "windowed", MODE_DNG: "dng", MODE_DNS: "dns"}
MODE_FROM_KEY = {v: k for k, v in MODE_KEYS.items()}

UNIT_STEPS = "steps"
UNIT_FRACTION = "fraction of the run"
UNITS = (UNIT_STEPS, UNIT_FRACTION)

HR_SAME = "Same as first pass"
HR_CUSTOM = "Own window"
HR_WHOLE = "Whole hires pass"
HR_NONE = "Not in hires pass"
HR_MODES = (HR_SAME, HR_CUSTOM, HR_WHOLE, HR_NONE)

TRACKER_AUTO = "auto"
TRACKERS = (TRACKER_AUTO, "transition", "flow-moment", "flow-hutchinson")  # negguide.dng.TRACKERS

PAPER_START_STEP, PAPER_END_STEP, PAPER_STEPS = 5, 15, 30


@dataclass
class NegGuideSettings:
    mode: str = MODE_OFF
    window_unit: str = UNIT_STEPS
    window_start: float = float(PAPER_START_STEP)
    window_end: float = float(PAPER_END_STEP)
    hr_window: str = HR_SAME
    hr_start: float = float(PAPER_START_STEP)
    hr_end: float = float(PAPER_END_STEP)
    lambda0: float = 5.0
    prior: float = 0.01
    temperature: float = 0.2
    offset: float = 0.003
    p_max: float = 0.8
    tracker: str = TRACKER_AUTO
    plot: bool = False

    @property
    def mode_key(self) -> str:
        return MODE_KEYS.get(self.mode, self.mode)

    @property
    def enabled(self) -> bool:
        return self.mode_key != "off"

    # --- windows -------------------------------------------------------------------------------------
    def _window(self, start: float, end: float) -> StepWindow:
        if self.window_unit == UNIT_STEPS:
            return StepWindow(int(start), int(end), "step")
        # fraction: the panel's end is inclusive of the step that starts at `end` only when end == 1
        return StepWindow(float(start), float(end), "fraction")

    def first_pass_window(self) -> StepWindow:
        return self._window(self.window_start, self.window_end)

    def hires_window(self) -> StepWindow | None:
        """The hires pass window; ``None`` means the negative is not used in the hires pass."""
        if self.hr_window == HR_SAME:
            return self.first_pass_window()
        if self.hr_window == HR_CUSTOM:
            return self._window(self.hr_start, self.hr_end)
        if self.hr_window == HR_WHOLE:
            return StepWindow.always()
        return None

    # --- conversions ---------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, *args) -> NegGuideSettings:
        """From the panel's values in UI order (missing trailing values keep their defaults)."""
        names = [f.name for f in fields(cls)]
        if len(args) > len(names):
            raise ValueError(f"negguide takes at most {len(names)} script args, got {len(args)}")
        s = cls(**dict(zip(names, args, strict=False)))
        s.mode = MODE_FROM_KEY.get(str(s.mode).lower(), s.mode) if s.mode not in MODES else s.mode
        return s

    def to_args(self) -> list:
        return [getattr(self, n) for n in ARG_NAMES]

    def to_dict(self) -> dict:
        return asdict(self)


ARG_NAMES = tuple(f.name for f in fields(NegGuideSettings))


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def validate(
    s: NegGuideSettings,
    *,
    steps: int | None = None,
    hr_steps: int | None = None,
    prompt: str = "",
    negative_prompt: str = "",
    enable_hr: bool = False,
) -> list[str]:
    """Every problem with ``s`` as a sentence a user can act on; empty when generation may start."""
    errors: list[str] = []
    if s.mode not in MODES:
        return [f"Negative guidance: unknown mode {s.mode!r}; choose one of: {', '.join(MODES)}."]
    if not s.enabled:
        return []
    for name in (
        "window_start",
        "window_end",
        "hr_start",
        "hr_end",
        "lambda0",
        "prior",
        "temperature",
        "offset",
        "p_max",
    ):
        if not _finite(getattr(s, name)):
            errors.append(f"Negative guidance: {name.replace('_', ' ')} must be a number, got {getattr(s, name)!r}.")
    if errors:
        return errors
    if not isinstance(s.plot, bool):
        errors.append("Negative guidance: 'add plot' must be true or false.")

    key = s.mode_key
    if key in ("windowed", "dng") and not negative_prompt.strip():
        errors.append(f"Negative guidance: mode '{s.mode}' needs a negative prompt; it is empty.")
    if key == "dns" and " AND " in prompt:
        errors.append(
            "Negative guidance: DNS swaps the prompt into the negative slot, which holds one "
            "prompt per image; remove 'AND' from the prompt."
        )

    if key == "windowed":
        if s.window_unit not in UNITS:
            errors.append(f"Negative guidance: window unit must be one of {UNITS}, got {s.window_unit!r}.")
            return errors
        if s.hr_window not in HR_MODES:
            errors.append(f"Negative guidance: hires window must be one of {HR_MODES}, got {s.hr_window!r}.")
            return errors
        pairs = [("window", s.window_start, s.window_end, steps)]
        if s.hr_window == HR_CUSTOM:
            pairs.append(("hires window", s.hr_start, s.hr_end, hr_steps))
        for label, a, b, n in pairs:
            errors += _check_window(
                label, s.window_unit, float(a), float(b), n, check_steps=(label == "window" or enable_hr)
            )

    if key == "dng":
        if not float(s.lambda0) > 0:
            errors.append(f"Negative guidance: lambda0 must be > 0, got {s.lambda0}.")
        if float(s.lambda0) > 1000:
            errors.append(f"Negative guidance: lambda0 {s.lambda0} is above 1000; that only saturates.")
        if not 0 < float(s.prior) < 1:
            errors.append(f"Negative guidance: prior must be strictly between 0 and 1, got {s.prior}.")
        if not 0 < float(s.temperature) <= 10:
            errors.append(f"Negative guidance: temperature must be in (0, 10], got {s.temperature}.")
        if not -1 <= float(s.offset) <= 1:
            errors.append(f"Negative guidance: offset must be in [-1, 1], got {s.offset}.")
        if not 0 < float(s.p_max) < 1:
            errors.append(f"Negative guidance: p_max must be strictly between 0 and 1, got {s.p_max}.")
        elif 0 < float(s.prior) < 1 and float(s.prior) > float(s.p_max):
            errors.append(f"Negative guidance: prior ({s.prior}) is above p_max ({s.p_max}).")
        if s.tracker not in TRACKERS:
            errors.append(f"Negative guidance: tracker must be one of {TRACKERS}, got {s.tracker!r}.")
        try:
            from .engine import dng_config
        except ImportError:  # the panel rendered without torch (standalone screenshots)
            dng_config = None
        if not errors and dng_config is not None:
            try:  # whatever else the core rejects
                dng_config(s)
            except ValueError as e:
                errors.append(f"Negative guidance: {e}.")
    return errors


def _check_window(label: str, unit: str, a: float, b: float, n: int | None, check_steps: bool) -> list[str]:
    out = []
    if unit == UNIT_STEPS:
        if a != int(a) or b != int(b):
            out.append(f"Negative guidance: {label} bounds are steps and must be whole numbers, got {a:g}-{b:g}.")
        elif a < 1:
            out.append(f"Negative guidance: {label} start must be step 1 or later, got {a:g}.")
        elif b < a:
            out.append(f"Negative guidance: {label} end (step {b:g}) is before its start (step {a:g}).")
        elif check_steps and n is not None and a > n:
            out.append(
                f"Negative guidance: {label} starts at step {a:g} but the run has only {n} steps; "
                "the negative prompt would never act."
            )
    else:
        if not (0 <= a <= 1 and 0 <= b <= 1):
            out.append(f"Negative guidance: {label} fractions must be in [0, 1], got {a:g}-{b:g}.")
        elif b <= a:
            out.append(f"Negative guidance: {label} is empty: end {b:g} is not after start {a:g}.")
    return out


# --- infotext --------------------------------------------------------------------------------------------
INFOTEXT_KEYS = {
    "mode": "NegGuide mode",
    "window_unit": "NegGuide window unit",
    "window_start": "NegGuide window start",
    "window_end": "NegGuide window end",
    "hr_window": "NegGuide hires window",
    "hr_start": "NegGuide hires start",
    "hr_end": "NegGuide hires end",
    "lambda0": "NegGuide lambda0",
    "prior": "NegGuide prior",
    "temperature": "NegGuide temperature",
    "offset": "NegGuide offset",
    "p_max": "NegGuide p_max",
    "tracker": "NegGuide tracker",
}

_RELEVANT = {
    "windowed": ("mode", "window_unit", "window_start", "window_end", "hr_window", "hr_start", "hr_end"),
    "dng": ("mode", "lambda0", "prior", "temperature", "offset", "p_max", "tracker"),
    "dns": ("mode",),
}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def infotext_params(s: NegGuideSettings) -> dict[str, str]:
    """``p.extra_generation_params`` entries for the settings that matter in ``s.mode``."""
    if not s.enabled:
        return {}
    names = _RELEVANT[s.mode_key]
    out = {}
    for n in names:
        if n in ("hr_start", "hr_end") and s.hr_window != HR_CUSTOM:
            continue
        v = s.mode_key if n == "mode" else getattr(s, n)
        out[INFOTEXT_KEYS[n]] = _fmt(v)
    return out


def settings_from_infotext(params: dict) -> NegGuideSettings | None:
    """Parse pasted infotext params (values are strings) back into settings; ``None`` if absent."""
    if INFOTEXT_KEYS["mode"] not in params:
        return None
    s = NegGuideSettings()
    kinds = {f.name: f.type for f in fields(NegGuideSettings)}
    for name, key in INFOTEXT_KEYS.items():
        if key not in params:
            continue
        raw = str(params[key]).strip()
        if name == "mode":
            s.mode = MODE_FROM_KEY.get(raw.lower(), raw)
        elif kinds[name] in ("float", float):
            s.__setattr__(name, float(raw))
        else:
            s.__setattr__(name, raw)
    return s
