"""What a pass at CFG 1 loses: the Forge line evaluates no unconditional rows there (Forge and Neo drop the uncond
before the CFG callback, "Negative Prompts are ignored"; reForge skips its rows), so every mode that acts through the
negative prompt or the uncond slot has nothing to act on in that pass. Forge's and Neo's default Hires CFG is 1."""

from __future__ import annotations

from negguide import GuidanceSpec


def lost_at_cfg_one(spec: GuidanceSpec) -> bool:
    """Whether a pass without unconditional rows loses what ``spec`` does (an empty window loses nothing)."""
    if spec.window is not None and spec.window.is_empty:
        return False
    mode = spec.guidance_mode()
    return mode.needs_negative_prompt or mode.slots(True).cond != "positive"


def cfg_one_warning(spec: GuidanceSpec, is_hr: bool) -> str:
    where = "hires pass at Hires CFG 1" if is_hr else "pass at CFG 1"
    fix = "Hires CFG to the CFG scale" if is_hr else "a CFG scale above 1"
    return (f"{spec.guidance_mode().label} does nothing in the {where}: the WebUI evaluates no negative prompt "
            f"there. Set {fix} to keep it.")
