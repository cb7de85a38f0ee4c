"""The always-on script's behaviour, independent of the WebUI's import paths.

``scripts/negguide.py`` subclasses :class:`NegGuideAlwaysOn` together with the WebUI's ``scripts.Script``;
the harnesses use it with their own :class:`Backend`. Backend detection is by what the model carries:
Forge's models have ``forge_objects`` (never assumed from the import path).
"""

from __future__ import annotations

from dataclasses import dataclass

from negguide.dng import describe_tracker

from .a1111 import A1111Adapter
from .engine import Job, dng_config, is_ancestral
from .forge import ForgeAdapter
from .settings import MODE_DNG, NegGuideSettings, infotext_params, validate

OVERRIDE_ATTR = "negguide_overrides"  # XYZ-grid axes put {field: value} here


@dataclass
class Backend:
    callbacks: object  # on_cfg_denoiser / on_cfg_denoised / on_cfg_after_cfg / remove_callbacks_for_function
    state: object  # .interrupted
    encode_empty: object  # (p, is_hr) -> one-row empty-prompt conditioning
    forge_api: object = None  # dict for the Forge adapter, None: import from Forge


def real_backend() -> Backend:
    from modules import script_callbacks, shared

    def encode_empty(p, is_hr):
        from modules import prompt_parser

        w = getattr(p, "hr_upscale_to_x", p.width) if is_hr else p.width
        h = getattr(p, "hr_upscale_to_y", p.height) if is_hr else p.height
        c = prompt_parser.SdConditioning([""], is_negative_prompt=True, width=w, height=h)
        return p.sd_model.get_learned_conditioning(c)

    return Backend(script_callbacks, shared.state, encode_empty)


def is_forge(p) -> bool:
    return hasattr(getattr(p, "sd_model", None), "forge_objects")


def settings_for(p, args) -> NegGuideSettings:
    s = NegGuideSettings.from_args(*args)
    for k, v in (getattr(p, OVERRIDE_ATTR, None) or {}).items():
        setattr(s, k, v)
    return s


def _first(v):
    return v[0] if isinstance(v, list) and v else (v or "")


class NegGuideAlwaysOn:
    """Hooks of the always-visible panel. ``self.backend_factory()`` gives the :class:`Backend`."""

    backend_factory = staticmethod(real_backend)

    def _reset(self):
        adapter = getattr(self, "_ng_adapter", None)
        if adapter is not None:
            adapter.remove()
        self._ng_adapter = None
        self._ng_job = None

    # ``process``: validate, write infotext, register the callbacks for this job
    def process(self, p, *args):
        self._reset()
        s = settings_for(p, args)
        if not s.enabled and s.mode in ("Off", "off"):
            return
        backend = self.backend_factory()
        hr_steps = getattr(p, "hr_second_pass_steps", 0) or getattr(p, "steps", None)
        errors = validate(
            s,
            steps=getattr(p, "steps", None),
            hr_steps=hr_steps,
            prompt=_first(getattr(p, "prompt", "")),
            negative_prompt=_first(getattr(p, "negative_prompt", "")),
            enable_hr=bool(getattr(p, "enable_hr", False)),
        )
        if errors:
            self.abort(p, backend, errors)
            return
        if not s.enabled:
            return
        p.extra_generation_params.update(infotext_params(s))
        if s.mode == MODE_DNG:
            stochastic = is_ancestral(getattr(p, "sampler_name", ""))
            p.extra_generation_params["NegGuide tracker"] = dng_config(s).resolved_tracker(stochastic)
        job = Job(s, lambda is_hr: backend.encode_empty(p, is_hr), p)
        cls = ForgeAdapter if is_forge(p) else A1111Adapter
        adapter = (
            cls(job, p, backend.callbacks) if cls is A1111Adapter else cls(job, p, backend.callbacks, backend.forge_api)
        )
        adapter.register()
        self._ng_job, self._ng_adapter = job, adapter

    def abort(self, p, backend, errors: list[str]):
        """Invalid settings: no generation, and the reason where the user looks (info text / console)."""
        msg = "\n".join(errors)
        print(f"[negguide] generation stopped:\n{msg}")
        if hasattr(p, "comment"):
            for e in errors:
                p.comment(e)
        p.negguide_errors = list(errors)
        backend.state.interrupted = True

    def process_batch(self, p, *args, batch_number=0, **kwargs):
        if getattr(self, "_ng_job", None) is not None:
            self._ng_job.batch_number = batch_number

    def process_before_every_sampling(self, p, *args, **kwargs):
        job = getattr(self, "_ng_job", None)
        if job is None:
            return
        is_hr = bool(getattr(p, "is_hr_pass", False))
        job.empty(is_hr)  # encode before sampling starts (Forge unloads the text encoder while sampling)
        if isinstance(self._ng_adapter, ForgeAdapter):
            self._ng_adapter.install(p)

    def postprocess(self, p, processed, *args):
        job = getattr(self, "_ng_job", None)
        if self._ng_adapter is not None:
            self._ng_adapter.remove()
        if job is None:
            return
        s = job.settings
        if s.plot and s.mode_key == "dng":
            from .plot import plot_records

            img = plot_records(job.records())
            if img is not None:
                processed.images.append(img)
                infos = getattr(processed, "infotexts", None)
                if isinstance(infos, list):
                    infos.append(infos[0] if infos else "")
        self.last_job = job
        self._ng_adapter = None
        self._ng_job = None

    @staticmethod
    def tracker_note(s: NegGuideSettings, sampler_name: str) -> str:
        return describe_tracker(dng_config(s), is_ancestral(sampler_name))
