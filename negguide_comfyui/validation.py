"""The nodes' ``VALIDATE_INPUTS``: what ComfyUI checks when a prompt is queued, so that the queue refuses bad settings
with one sentence instead of failing when the prompt runs.

ComfyUI passes a node's widget values (a linked input as None, an unconnected optional input not at all) and, for a
node that has ``VALIDATE_INPUTS`` with ``**kwargs``, skips its own range and choice checks (``execution.py``,
``validate_inputs``): they are made here again, with what ComfyUI's min/max let pass (NaN compares false both ways),
followed by the core's own checks of the mode's settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from negguide import Frame, SettingsError, is_finite_number

from .guidance_inputs import NO_EMPTY_PROMPT
from .modes import Mode

NOMINAL_CFG = 7.0  # a patch does not know the sampler's cfg: its settings are checked at a typical scale


def widget_problems(declared: Mapping[str, tuple], values: Mapping) -> list[str]:
    """Type, range and choice of each given widget value (linked ones, None, are checked when they arrive)."""
    problems = []
    for name, spec in declared.items():
        value = values.get(name)
        if value is None:
            continue
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list):
            if value not in kind:
                problems.append(f"{name} must be one of {', '.join(map(str, kind))}, got {value!r}")
        elif kind in ("FLOAT", "INT"):
            if not is_finite_number(value):
                problems.append(f"{name} must be a finite number, got {value!r}")
            elif kind == "INT" and value != int(value):
                problems.append(f"{name} must be a whole number, got {value!r}")
            elif not options.get("min", value) <= value <= options.get("max", value):
                problems.append(f"{name} must be in [{options['min']:g}, {options['max']:g}], got {value:g}")
    return problems


def validate(title: str, mode: Mode, declared: Mapping[str, tuple], values: Mapping,
             cfg_scale: float | None) -> bool | str:
    """True, or one sentence naming the node and every problem. ``cfg_scale``: the guider's (None where it is
    linked or the node is a patch: then :data:`NOMINAL_CFG`)."""
    problems = widget_problems(declared, values)
    settings = (*mode.widgets, *mode.optional)
    if not problems and all(values.get(name) is not None for name in mode.widgets):
        try:  # a sigma window is checked in k-diffusion sigmas: the same bounds hold in flow time
            mode.spec({k: values[k] for k in settings if values.get(k) is not None},
                      NOMINAL_CFG if cfg_scale is None else cfg_scale, Frame.k_diffusion())
        except SettingsError as err:
            problems += err.problems
    if "empty_conditioning" not in values and "clip" not in values:
        problems.append(NO_EMPTY_PROMPT)
    return True if not problems else f"{title}: " + "; ".join(problems)
