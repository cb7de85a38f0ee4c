"""Whether a guided pass's negative prompt never acted, and why: a window past the pass's last step, an adaptive
signal that never fired, SLD's warm-up longer than the pass, a scale of 0. Such a pass samples what the empty
negative prompt would (a valid baseline), but a user who did not mean it should hear so: the patch logs the
sentence and the plot node's summary shows it."""

from __future__ import annotations

from negguide import GuidanceSpec, negative_starts


def idle_reason(spec: GuidanceSpec, records: list[dict], batch_size: int, steps: int) -> str | None:
    """A sentence when the negative prompt acted on no step of the pass (from its records and the settings)."""
    if spec.mode == "dns":  # DNS never reads a negative prompt
        return None
    if spec.window is not None and records and all(start is None for start in negative_starts(records, batch_size)):
        if spec.mode == "adaptive" and any(r["negative_active"] for r in records):
            return f"the adaptive {spec.adaptive.signal} signal never reached {spec.adaptive.threshold:g}"
        return f"the window {spec.window.describe()} covers none of the pass's {steps} steps"
    if spec.mode == "sld":
        if spec.sld.warmup_steps >= steps:
            return f"SLD's warmup_steps ({spec.sld.warmup_steps}) is not below the pass's {steps} steps"
        if spec.sld.s_s == 0 and spec.sld.s_m == 0:
            return "SLD's scale and momentum scale are both 0"
    scale = {"dng": ("lambda0", spec.dng.lambda0), "perp_neg": ("neg_scale", spec.perp_neg_scale),
             "np_lambda": ("negative_scale", spec.negative_scale)}.get(spec.mode)
    if scale is not None and scale[1] == 0:
        return f"{scale[0]} is 0"
    return None
