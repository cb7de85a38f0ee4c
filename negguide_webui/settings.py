"""The panel's settings: one dataclass, its validation, and its infotext form.

The order of :data:`ARG_NAMES` is the order of the panel's components, which is also the order of the
``args`` list in an API request's ``alwayson_scripts`` entry. Never reorder it; append new fields at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from negguide import AdaptiveStart, DNGConfig, GuidanceSpec, SettingsError, StepWindow, is_finite_number

MODE_OFF = "Off"
MODE_WINDOWED = "Windowed negative prompt"
MODE_DNG = "Dynamic negative guidance (DNG)"
MODE_DNS = "Diffusion-negative sample (DNS)"
MODE_ADAPTIVE = "Adaptive window"
MODE_NP_LAMBDA = "Constant negative guidance"
MODES = (MODE_OFF, MODE_WINDOWED, MODE_DNG, MODE_DNS, MODE_ADAPTIVE, MODE_NP_LAMBDA)
# short names, accepted from the API / infotext as well
MODE_KEYS = {MODE_OFF: "off", MODE_WINDOWED: "windowed", MODE_DNG: "dng", MODE_DNS: "dns", MODE_ADAPTIVE: "adaptive",
             MODE_NP_LAMBDA: "np_lambda"}
MODE_FROM_KEY = {v: k for k, v in MODE_KEYS.items()}
# the core mode behind each panel mode
CORE_MODES = {"windowed": "np", "dng": "dng", "dns": "dns", "adaptive": "adaptive", "np_lambda": "np_lambda"}
WINDOWED_KEYS = ("windowed", "adaptive")  # the panel modes that read the window controls

UNIT_STEPS = "steps"
UNIT_FRACTION = "fraction of the run"
UNITS = (UNIT_STEPS, UNIT_FRACTION)

HR_SAME = "Same as first pass"
HR_CUSTOM = "Own window"
HR_WHOLE = "Whole hires pass"
HR_NONE = "Not in hires pass"
HR_MODES = (HR_SAME, HR_CUSTOM, HR_WHOLE, HR_NONE)

PAPER_START_STEP, PAPER_END_STEP = 5, 15  # Ban et al.'s window: steps 5-15 (of 30)
_DNG, _ADAPTIVE, _SPEC = DNGConfig(), AdaptiveStart(), GuidanceSpec()  # the panel's defaults are the core's


@dataclass
class NegGuideSettings:
    mode: str = MODE_OFF
    window_unit: str = UNIT_STEPS
    window_start: float = float(PAPER_START_STEP)
    window_end: float = float(PAPER_END_STEP)
    hr_window: str = HR_SAME
    hr_start: float = float(PAPER_START_STEP)
    hr_end: float = float(PAPER_END_STEP)
    lambda0: float = _DNG.lambda0
    prior: float = _DNG.prior
    temperature: float = _DNG.temperature
    offset: float = _DNG.offset
    p_max: float = _DNG.p_max
    tracker: str = _DNG.tracker
    plot: bool = False
    # appended after the API's first 14 args (their order never changes): the adaptive window, constant negative
    adaptive_signal: str = _ADAPTIVE.signal
    adaptive_threshold: float = _ADAPTIVE.threshold
    negative_scale: float = _SPEC.negative_scale

    @property
    def mode_key(self) -> str:
        return MODE_KEYS.get(self.mode, self.mode)

    @property
    def enabled(self) -> bool:
        return self.mode_key != "off"

    # --- windows and the core's spec ------------------------------------------------------------------
    def _window(self, start: float, end: float) -> StepWindow:
        unit = "step" if self.window_unit == UNIT_STEPS else "fraction"
        return StepWindow(float(start), float(end), unit)

    def window_for(self, is_hr: bool) -> StepWindow:
        """The window of the first pass, or of the hires pass ("not in hires pass": an empty window)."""
        if not is_hr or self.hr_window == HR_SAME:
            return self._window(self.window_start, self.window_end)
        if self.hr_window == HR_CUSTOM:
            return self._window(self.hr_start, self.hr_end)
        return StepWindow.always() if self.hr_window == HR_WHOLE else StepWindow.never()

    def dng_config(self) -> DNGConfig:
        return DNGConfig(lambda0=float(self.lambda0), prior=float(self.prior), temperature=float(self.temperature),
                         offset=float(self.offset), p_max=float(self.p_max), tracker=self.tracker)

    def spec(self, cfg_scale: float, is_hr: bool = False) -> GuidanceSpec | None:
        """The core's spec of this pass (None when off). Raises :class:`negguide.checks.SettingsError`."""
        key = self.mode_key
        if key == "windowed":
            return GuidanceSpec(CORE_MODES[key], cfg_scale, window=self.window_for(is_hr))
        if key == "adaptive":  # the window's start is the earliest start, its end where the negative stops
            start = AdaptiveStart(self.adaptive_signal, float(self.adaptive_threshold))
            return GuidanceSpec(CORE_MODES[key], cfg_scale, window=self.window_for(is_hr), adaptive=start)
        if key == "np_lambda":
            return GuidanceSpec(CORE_MODES[key], cfg_scale, negative_scale=float(self.negative_scale))
        if key == "dng":
            return GuidanceSpec(CORE_MODES[key], cfg_scale, dng=self.dng_config())
        if key == "dns":  # the WebUI's CFG with swapped prompts is DNS at s = w - 1
            return GuidanceSpec(CORE_MODES[key], cfg_scale)
        return None

    # --- conversions ---------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, *args) -> NegGuideSettings:
        """From the panel's values in UI order (missing trailing values keep their defaults)."""
        names = [f.name for f in fields(cls)]
        if split_string(args):
            raise ValueError(f"the script args must be a JSON list of values, mode first (e.g. [\"dng\"]); got the "
                             f"characters of the string {''.join(args)!r}, which the WebUI splits when a string is "
                             "sent where the list goes")
        if len(args) > len(names):
            raise ValueError(f"negguide takes at most {len(names)} script args, got {len(args)}")
        s = cls(**dict(zip(names, args, strict=False)))
        s.mode = MODE_FROM_KEY.get(str(s.mode).lower(), s.mode) if s.mode not in MODES else s.mode
        return s

    def to_args(self) -> list:
        return [getattr(self, n) for n in ARG_NAMES]


ARG_NAMES = tuple(f.name for f in fields(NegGuideSettings))


def split_string(args) -> bool:
    """Whether ``args`` are the characters of one string: what Forge Neo's API makes of ``"args": "dng"`` (every
    value a single character: no valid args list looks like that, its window unit and hires choice are words)."""
    return len(args) >= 2 and all(isinstance(a, str) and len(a) == 1 for a in args)


NUMBER_FIELDS = ("window_start", "window_end", "hr_start", "hr_end", "lambda0", "prior", "temperature", "offset",
                 "p_max", "adaptive_threshold", "negative_scale")


def validate(s: NegGuideSettings, *, prompt: str = "", negative_prompt: str = "") -> list[str]:
    """Every problem with ``s`` as a sentence a user can act on; empty when generation may start.

    The WebUI checks only what the WebUI adds (its mode names, units, hires choices, how values arrive from
    the API, prompts); everything about the guidance itself is the core's own validation."""
    if s.mode not in MODES:
        return [f"Negative guidance: unknown mode {s.mode!r}; choose one of: {', '.join(MODES)}."]
    if not s.enabled:
        return []
    errors = [f"Negative guidance: {n.replace('_', ' ')} must be a number, got {getattr(s, n)!r}."
              for n in NUMBER_FIELDS if not is_finite_number(getattr(s, n))]
    if errors:
        return errors
    key = s.mode_key
    if not isinstance(s.plot, bool):
        errors.append("Negative guidance: 'add plot' must be true or false.")
    if s.window_unit not in UNITS:
        errors.append(f"Negative guidance: window unit must be one of {UNITS}, got {s.window_unit!r}.")
    if s.hr_window not in HR_MODES:
        errors.append(f"Negative guidance: hires window must be one of {HR_MODES}, got {s.hr_window!r}.")
    mode = GuidanceSpec(CORE_MODES[key]).guidance_mode()  # what the mode reads, whatever its settings
    if mode.reads_negative and not negative_prompt.strip():
        errors.append(f"Negative guidance: mode '{s.mode}' needs a negative prompt; it is empty.")
    if mode.slots(True).uncond == "positive" and " AND " in prompt:
        errors.append(f"Negative guidance: {key.upper()} swaps the prompt into the negative slot, which holds one "
                      "prompt per image; remove 'AND' from the prompt.")
    if errors:
        return errors
    for is_hr in (False, True):
        try:
            s.spec(7.0, is_hr)
        except SettingsError as e:
            where = "hires window: " if is_hr else ""
            errors += [f"Negative guidance: {where}{problem}." for problem in e.problems
                       if f"Negative guidance: {problem}." not in errors]
        if key not in WINDOWED_KEYS or s.hr_window != HR_CUSTOM:
            break
    return errors


def notes(s: NegGuideSettings, steps: int | None = None) -> list[str]:
    """What a valid setting will do that a user may not expect (shown, never refused)."""
    out = []
    if s.mode_key in WINDOWED_KEYS and not validate(s, negative_prompt="x"):
        window = s.window_for(False)
        if window.is_empty or (steps and window.unit == "step" and window.start > steps):
            out.append("The window is empty: the negative prompt acts on no step (as an empty negative prompt).")
    if s.mode_key == "dng" and is_finite_number(s.lambda0) and float(s.lambda0) == 0:
        out.append("lambda0 = 0: no negative guidance (as an empty negative prompt), no extra UNet rows.")
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
    "adaptive_signal": "NegGuide adaptive signal",
    "adaptive_threshold": "NegGuide adaptive threshold",
    "negative_scale": "NegGuide negative scale",
}

_RELEVANT = {
    "windowed": ("mode", "window_unit", "window_start", "window_end", "hr_window", "hr_start", "hr_end"),
    "dng": ("mode", "lambda0", "prior", "temperature", "offset", "p_max", "tracker"),
    "dns": ("mode",),
    "adaptive": ("mode", "window_unit", "window_start", "window_end", "hr_window", "hr_start", "hr_end",
                 "adaptive_signal", "adaptive_threshold"),
    "np_lambda": ("mode", "negative_scale"),
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
