"""XYZ-grid axes: mode, window start / end, lambda0, the adaptive window's signal and threshold, the constant
negative scale, written into ``p.negguide_overrides`` (new axes are appended: saved grids name axes by label)."""

from __future__ import annotations

from negguide.configs import ADAPTIVE_SIGNALS

from .extension import OVERRIDE_ATTR
from .settings import MODES

AXES = (
    ("[NegGuide] Mode", str, "mode"),
    ("[NegGuide] Window start", float, "window_start"),
    ("[NegGuide] Window end", float, "window_end"),
    ("[NegGuide] DNG lambda0", float, "lambda0"),
    ("[NegGuide] Adaptive signal", str, "adaptive_signal"),
    ("[NegGuide] Adaptive threshold", float, "adaptive_threshold"),
    ("[NegGuide] Constant negative scale", float, "negative_scale"),
)
CHOICES = {"mode": lambda: list(MODES), "adaptive_signal": lambda: list(ADAPTIVE_SIGNALS)}


def _setter(field, cast):
    def apply(p, x, xs):
        ov = dict(getattr(p, OVERRIDE_ATTR, None) or {})
        ov[field] = cast(x)
        setattr(p, OVERRIDE_ATTR, ov)

    return apply


def add_axes(xyz_module) -> int:
    """Append negguide's axes to ``xyz_module.axis_options`` (once). Returns how many were added."""
    have = {getattr(a, "label", None) for a in xyz_module.axis_options}
    added = 0
    for label, cast, field in AXES:
        if label in have:
            continue
        if field in CHOICES:
            opt = xyz_module.AxisOption(label, str, _setter(field, cast), choices=CHOICES[field])
        else:
            opt = xyz_module.AxisOption(label, cast, _setter(field, cast))
        xyz_module.axis_options.append(opt)
        added += 1
    return added


def register_with_webui():
    """``on_before_ui`` callback: find the built-in XYZ-grid script's module and add the axes."""
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid", "xyz_grid"):
            add_axes(data.module)
            return
