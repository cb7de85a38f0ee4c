"""What the WebUI's processing object ``p`` tells about a sampling pass: its sampler and its img2img placement."""

from __future__ import annotations

from negguide import SamplerInfo, is_finite_number
from negguide import probe_generators as per_image_generators


def cfg_scale(p, is_hr: bool) -> float:
    """The pass's CFG scale: the Forge line runs its hires pass at ``p.hr_cfg`` (reForge: 0 means the CFG scale);
    A1111 and Forge Classic have no Hires CFG."""
    hires = getattr(p, "hr_cfg", None)
    if is_hr and is_finite_number(hires) and float(hires) > 0:
        return float(hires)
    return float(p.cfg_scale)


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


PROBE_SEED_OFFSET = 0x5EED  # probe directions must not repeat the image noise drawn from the same seed


def probe_generators(p, batch: int, is_hr: bool):
    """One generator per image for DNG's Hutchinson probes, from the image's own seed (the hires pass another
    stream): a seed reproduces an image's guidance whatever its batch. None without seeds."""
    seeds = list(getattr(p, "seeds", None) or [])
    if len(seeds) != batch:
        return None
    return per_image_generators(seeds, PROBE_SEED_OFFSET + (1 if is_hr else 0))
