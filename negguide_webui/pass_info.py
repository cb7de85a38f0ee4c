"""What the WebUI's processing object ``p`` tells about a sampling pass: its sampler and its img2img placement."""

from __future__ import annotations

from negguide.samplers import SamplerInfo


def sampler_name(p, is_hr: bool) -> str:
    return (getattr(p, "hr_sampler_name", None) if is_hr else None) or getattr(p, "sampler_name", "") or ""


def sampler_info(p, backend, is_hr: bool) -> SamplerInfo:
    """The pass's sampler; its eta is ``p.eta`` or the WebUI's option for the family (``backend.default_eta``:
    A1111 and Forge read ``eta_ancestral`` / ``eta_ddim``); the core decides what eta means."""
    name = sampler_name(p, is_hr)
    eta = getattr(p, "eta", None)
    if eta is None and backend.default_eta is not None:
        eta = backend.default_eta(name)
    return SamplerInfo.from_name(name, eta)


def schedule_steps(p, is_hr: bool) -> int | None:
    """img2img runs the tail of a ``p.steps``-step schedule: windows in steps keep their place in it."""
    if is_hr or getattr(p, "init_latent", None) is None:
        return None
    return int(getattr(p, "steps", 0) or 0) or None
