"""The always-on script's behaviour, independent of the WebUI's import paths.

``scripts/negguide.py`` subclasses :class:`NegGuideAlwaysOn` together with the WebUI's ``scripts.Script``;
the tests' harnesses use it with their own :class:`Backend`. Backend detection is by what the model carries:
Forge's models have ``forge_objects`` (never assumed from the import path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from negguide import negative_starts

from .a1111 import A1111Adapter
from .forge import ForgeAdapter
from .job import Job
from .pass_info import sampler_info
from .settings import MODE_OFF, NegGuideSettings, infotext_params, validate
from .status import refuse

OVERRIDE_ATTR = "negguide_overrides"  # XYZ-grid axes put {field: value} here
STARTS_KEY = "NegGuide adaptive starts"  # infotext: per image of the batch, the step its negative started at


@dataclass
class Backend:
    callbacks: object  # on_cfg_denoiser / on_cfg_denoised / on_cfg_after_cfg / remove_callbacks_for_function
    state: object  # .interrupted
    encode_empty: Callable  # (p, is_hr) -> one-row empty-prompt conditioning
    forge_api: dict | None = None  # the Forge adapter's API; None: import it from Forge
    default_eta: Callable[[str], float | None] | None = None  # the WebUI's eta option for a sampler name


class Adapter(Protocol):
    """What the extension needs from a WebUI's wiring."""

    def register(self) -> None: ...

    def remove(self) -> None: ...

    def before_sampling(self, p) -> None: ...


def real_backend() -> Backend:
    from modules import script_callbacks, shared

    def encode_empty(p, is_hr):
        from modules import prompt_parser

        w = getattr(p, "hr_upscale_to_x", p.width) if is_hr else p.width
        h = getattr(p, "hr_upscale_to_y", p.height) if is_hr else p.height
        c = prompt_parser.SdConditioning([""], is_negative_prompt=True, width=w, height=h)
        return p.sd_model.get_learned_conditioning(c)

    def default_eta(name: str):
        opts = shared.opts
        option = "eta_ddim" if "ddim" in name.lower() else "eta_ancestral"
        return getattr(opts, option, None)

    return Backend(script_callbacks, shared.state, encode_empty, default_eta=default_eta)


def is_forge(p) -> bool:
    return hasattr(getattr(p, "sd_model", None), "forge_objects")


def settings_for(p, args) -> NegGuideSettings:
    s = NegGuideSettings.from_args(*args)
    for k, v in (getattr(p, OVERRIDE_ATTR, None) or {}).items():
        setattr(s, k, v)
    return s


def adaptive_starts(passes, batch_number: int) -> str:
    """Per pass of a batch, each image's first step (1-based) with its negative acting: "7, 9" (one pass), "first
    pass 7, never; hires 1, 1" (with a hires pass)."""
    shown = [sp for sp in passes if sp.batch_number == batch_number]
    parts = []
    for sp in shown:
        steps = ", ".join("never" if s is None else str(s + 1) for s in negative_starts(sp.run.records,
                                                                                     sp.run.batch_size))
        parts.append(steps if len(shown) == 1 else f"{'hires' if sp.is_hr else 'first pass'} {steps}")
    return "; ".join(parts)


def _first(v):
    return v[0] if isinstance(v, list) and v else (v or "")


class NegGuideAlwaysOn:
    """Hooks of the always-visible panel. ``self.backend_factory()`` gives the :class:`Backend`."""

    backend_factory = staticmethod(real_backend)

    def _reset(self):
        adapter = getattr(self, "_ng_adapter", None)
        if adapter is not None:
            adapter.remove()
        self._ng_adapter: Adapter | None = None
        self._ng_job: Job | None = None

    # ``process``: validate, write infotext, register the callbacks for this job
    def process(self, p, *args):
        self._reset()
        try:
            s = settings_for(p, args)
        except (TypeError, ValueError) as e:  # args the panel never sends (an API client's): refuse, never raise
            refuse(p, self.backend_factory().state, [f"Negative guidance: {e}."])
            return
        if s.mode == MODE_OFF:
            return
        backend = self.backend_factory()
        errors = validate(s, prompt=_first(getattr(p, "prompt", "")),
                          negative_prompt=_first(getattr(p, "negative_prompt", "")))
        if errors:
            refuse(p, backend.state, errors)
            return
        if not s.enabled:
            return
        p.extra_generation_params.update(infotext_params(s))
        if s.mode_key == "dng":
            p.extra_generation_params["NegGuide tracker"] = s.dng_config().resolved_tracker(
                sampler_info(p, backend, is_hr=False))
        job = Job(s, lambda is_hr: backend.encode_empty(p, is_hr), p)
        adapter = (ForgeAdapter if is_forge(p) else A1111Adapter)(job, p, backend)
        adapter.register()
        self._ng_job, self._ng_adapter = job, adapter

    def process_batch(self, p, *args, batch_number=0, **kwargs):
        if getattr(self, "_ng_job", None) is not None:
            self._ng_job.batch_number = batch_number

    def postprocess_batch(self, p, *args, batch_number=0, **kwargs):
        """After a batch's passes, before its infotexts are written: where each image's adaptive window started."""
        job = getattr(self, "_ng_job", None)
        if job is not None and job.settings.mode_key == "adaptive":
            text = adaptive_starts(job.passes, batch_number)
            if text:
                p.extra_generation_params[STARTS_KEY] = text

    def process_before_every_sampling(self, p, *args, **kwargs):
        job = getattr(self, "_ng_job", None)
        if job is None:
            return
        job.empty(bool(getattr(p, "is_hr_pass", False)))  # encode now: Forge unloads the text encoder to sample
        self._ng_adapter.before_sampling(p)

    def postprocess(self, p, processed, *args):
        job = getattr(self, "_ng_job", None)
        if self._ng_adapter is not None:
            self._ng_adapter.remove()
        if job is None:
            return
        if job.settings.plot:  # a plot of DNG's posterior: None for passes without one
            from .plot import plot_passes

            img = plot_passes(job.passes)
            if img is not None:
                processed.images.append(img)
                infos = getattr(processed, "infotexts", None)
                if isinstance(infos, list):
                    infos.append(infos[0] if infos else "")
        self.last_job = job
        self._ng_adapter = None
        self._ng_job = None
