"""NegGuidePipeline: negguide's guidance modes on a diffusers StableDiffusion / SDXL / SD3 pipeline.

    from negguide.generate import NegGuidePipeline

    pipe = NegGuidePipeline.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0",
                                            torch_dtype=torch.float16).to("cuda")
    out = pipe("a photo of a park", negative_prompt="people", mode="dng",
               generator=torch.Generator().manual_seed(0))
    out.images[0].save("park.png"); out.plot()

The wrapper shares the pipeline's modules (``from_pipe``); it uses the pipeline's own ``encode_prompt``,
``prepare_latents``, scheduler and VAE, and drives one :class:`negguide.run.GuidanceRun` per call through
:func:`negguide.generate.loop.denoise`.
"""

from __future__ import annotations

import contextlib

import torch

from .. import GuidanceRun, GuidanceSpec, SettingsError, __version__, check_compatible
from .. import probe_generators as per_image_generators
from .captioner import DEFAULT_CAPTIONER, load_captioner
from .families import family_of
from .loop import denoise, step_kwargs
from .model_defaults import read_model_defaults
from .output import NegGuideOutput
from .schedulers import SchedulerAdapter, UnsupportedScheduler, a1111_name, friendly_name, make_scheduler
from .settings import build_spec, expected_branches, mode_label, uses_negative

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def _as_list(value, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) and value:
        return list(value)
    raise ValueError(f"{name} must be a string or a non-empty list of strings, got {value!r}")


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype`` in diffusers versions that renamed it, else ``torch_dtype``."""
    from diffusers.utils import deprecation_utils

    return {"dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype": dtype}


def _seeds(generator) -> list[int] | None:
    gens = generator if isinstance(generator, list) else [generator]
    if any(g is None for g in gens):
        return None
    return [int(g.initial_seed()) for g in gens]


PROBE_SEED_OFFSET = 0x9E3779B9  # probe directions must not repeat the image noise drawn from the same seed


def probe_generators(generator, batch: int) -> list[torch.Generator] | None:
    """One CPU generator per image for DNG's Hutchinson probe directions, derived from the user's generators'
    seeds without drawing from them (the image noise stays exactly the pipeline's): with one generator per
    image, image i's guidance is that of a single run with generator i."""
    gens = generator if isinstance(generator, list) else [generator]
    if any(g is None for g in gens):
        return None
    seeds = ([int(g.initial_seed()) for g in gens] if len(gens) == batch
             else [int(gens[0].initial_seed()) + i for i in range(batch)])
    return per_image_generators(seeds, PROBE_SEED_OFFSET)


class NegGuidePipeline:
    """negguide for a ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline`` or ``StableDiffusion3Pipeline``.

    The wrapped pipeline stays usable (``.pipe``); modules are shared, not copied."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.family = family_of(pipe)
        # the model folder's negguide.json (guidance scale, steps, DNP captioner), if it has one
        self.defaults = read_model_defaults(getattr(pipe, "config", {}).get("_name_or_path"))

    # --- construction, diffusers style ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, scheduler: str | None = None, **kwargs):
        """``DiffusionPipeline.from_pretrained(...)`` (the pipeline class comes from ``model_index.json``);
        ``scheduler``: a friendly scheduler name (see :data:`negguide.generate.schedulers.SCHEDULERS`)."""
        from diffusers import DiffusionPipeline

        out = cls(DiffusionPipeline.from_pretrained(pretrained_model_name_or_path, **kwargs))
        if scheduler is not None:
            out.set_scheduler(scheduler)
        return out

    @classmethod
    def from_pipe(cls, pipe, **kwargs):
        """Wrap an existing pipeline, sharing its modules. Keyword arguments replace components (diffusers'
        ``from_pipe``: e.g. ``scheduler=...``) in a new pipeline object; the original keeps its own scheduler, and
        the shared modules keep their dtype (diffusers' ``from_pipe`` alone would cast them to float32)."""
        if kwargs:
            if "dtype" not in kwargs and "torch_dtype" not in kwargs:
                # diffusers' from_pipe casts the SHARED modules to float32 unless told otherwise: keep their dtype
                kwargs.update(dtype_kwarg(pipe.dtype))
            pipe = type(pipe).from_pipe(pipe, **kwargs)
        return cls(pipe)

    def to(self, *args, **kwargs) -> NegGuidePipeline:
        self.pipe.to(*args, **kwargs)
        return self

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @scheduler.setter
    def scheduler(self, value):
        self.pipe.scheduler = value

    def set_scheduler(self, name: str) -> NegGuidePipeline:
        """Switch to a scheduler by friendly name (``euler``, ``euler_a``, ``dpmpp_2m``, ``ddim``, ``unipc``,
        ``flow_euler`` ...), built from the current scheduler's config."""
        scheduler = make_scheduler(name, self.pipe.scheduler)
        SchedulerAdapter.of(scheduler, self.family.flow)  # refuse a scheduler that does not fit the model now
        self.pipe.scheduler = scheduler
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        self.pipe.set_progress_bar_config(**kwargs)

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def dtype(self) -> torch.dtype:
        return self.family.denoiser.dtype

    # --- generation ---------------------------------------------------------------------------------------------
    def guidance_spec(self, mode: str = "off", guidance_scale: float | None = None, window=None,
                      dns_scale: float | None = None, dng=None, sld=None, perp_neg_scale: float = 1.0,
                      negative_scale: float = 1.0, adaptive=None) -> GuidanceSpec:
        """The :class:`GuidanceSpec` that these arguments of :meth:`__call__` describe."""
        default = self.defaults.get("guidance_scale", self.family.default_guidance_scale)
        scale = default if guidance_scale is None else guidance_scale
        return build_spec(mode, scale, window, dns_scale, dng, sld, perp_neg_scale, negative_scale, adaptive)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None, *,
                 mode: str = "off", guidance_scale: float | None = None, window=None, dns_scale: float | None = None,
                 dng=None, sld=None, perp_neg_scale: float = 1.0, negative_scale: float = 1.0, adaptive=None,
                 guidance: GuidanceSpec | None = None,
                 num_inference_steps: int | None = None, height: int | None = None, width: int | None = None,
                 num_images_per_prompt: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, eta: float = 0.0, output_type: str = "pil",
                 clip_skip: int | None = None, attention_kwargs: dict | None = None, max_sequence_length: int = 256,
                 record: str = "per_image", callback_on_step_end=None, capture_attention: bool = False,
                 return_dict: bool = True):
        """Generate with a negguide mode. Guidance: either ``mode`` and its options, or a ready ``guidance``
        spec (then ``mode``, ``guidance_scale`` and the mode options must be left at their defaults).

        ``mode``: ``off`` (the pipeline's own CFG with ``negative_prompt``), ``windowed`` / ``np`` with
        ``window`` (a :class:`StepWindow` or ``(start, end[, unit])``), ``np3``, ``dns`` (``dns_scale``),
        ``dng`` (``dng``: a :class:`DNGConfig` or dict), ``sld`` (``sld``), ``perp_neg`` (``perp_neg_scale``),
        ``np_lambda`` (``negative_scale``: a constant lambda), ``adaptive`` (``window``: earliest start and end,
        default steps 1-15 of 30; ``adaptive``: an :class:`AdaptiveStart` or dict, the start signal).
        ``generator``: one, or a list with one per image (image ``i`` then equals a single run with
        ``generator[i]``). ``capture_attention``: record every cross-attention layer per step and token
        (``out.attention``, ``out.plot_attention(negative_word, positive_word)``: Ban et al.'s r_t); the images
        are the same as without it. ``output_type``: ``pil``, ``np``, ``pt``, ``latent``. ``callback_on_step_end(pipe,
        i, t, {"latents": ..., "denoised": ...})`` may return ``{"latents": ...}`` (``denoised``: the guided x0
        estimate of the step, in latent space).
        Returns :class:`NegGuideOutput` (``return_dict=False``: ``(images, records)``)."""
        spec = self._resolve_spec(guidance, mode, guidance_scale, window, dns_scale, dng, sld, perp_neg_scale,
                                  negative_scale, adaptive)
        result = self._generate(spec, prompt, negative_prompt, num_inference_steps, height, width,
                                num_images_per_prompt, generator, latents, eta, output_type, clip_skip,
                                attention_kwargs, max_sequence_length, record, callback_on_step_end,
                                capture_attention)
        return result if return_dict else (result.images, result.records)

    def _resolve_spec(self, guidance, mode, guidance_scale, window, dns_scale, dng, sld, perp_neg_scale,
                      negative_scale=1.0, adaptive=None):
        if guidance is None:
            return self.guidance_spec(mode, guidance_scale, window, dns_scale, dng, sld, perp_neg_scale,
                                      negative_scale, adaptive)
        given = [name for name, value, default in (
            ("mode", mode, "off"), ("guidance_scale", guidance_scale, None), ("window", window, None),
            ("dns_scale", dns_scale, None), ("dng", dng, None), ("sld", sld, None),
            ("perp_neg_scale", perp_neg_scale, 1.0), ("negative_scale", negative_scale, 1.0),
            ("adaptive", adaptive, None)) if value != default]
        if given:
            raise ValueError(f"pass either guidance=GuidanceSpec(...) or {', '.join(given)}, not both")
        if not isinstance(guidance, GuidanceSpec):
            raise TypeError(f"guidance must be a GuidanceSpec, got {type(guidance).__name__}")
        return guidance

    def _generate(self, spec, prompt, negative_prompt, steps, height, width, images_per_prompt, generator, latents,
                  eta, output_type, clip_skip, attention_kwargs, max_sequence_length, record, callback,
                  capture_attention=False):
        family, pipe = self.family, self.pipe
        prompts = _as_list(prompt, "prompt")
        negatives = None if negative_prompt is None else _as_list(negative_prompt, "negative_prompt")
        if negatives is not None and len(negatives) == 1 and len(prompts) > 1:
            negatives = negatives * len(prompts)
        if negatives is not None and len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
        if negatives is None and uses_negative(spec) and not spec.class_removal:
            raise ValueError(f"mode {mode_label(spec)!r} guides away from a negative prompt: pass negative_prompt")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not (isinstance(images_per_prompt, int) and images_per_prompt >= 1):
            raise ValueError(f"num_images_per_prompt must be a whole number >= 1, got {images_per_prompt!r}")
        batch = len(prompts) * images_per_prompt
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} images: pass one, or one per image")
        steps = self.defaults.get("steps", family.default_steps) if steps is None else steps
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"num_inference_steps must be a whole number >= 1, got {steps!r}")
        default_h, default_w = family.default_size()
        height, width = height or default_h, width or default_w
        multiple = family.size_multiple()
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple}, got {height}x{width}")

        device = family.device
        adapter = self.scheduler_adapter(spec, eta)
        latent_hw = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        timesteps = family.set_timesteps(steps, device, latent_hw)
        run = GuidanceRun(spec, batch, adapter.frame, adapter.sampler, steps=steps,
                          clock=adapter.clock(steps, timesteps), generator=probe_generators(generator, batch),
                          record=record)

        cond = family.conditioning(prompts, negatives, images_per_prompt, height=height, width=width,
                                   clip_skip=clip_skip, attention_kwargs=attention_kwargs,
                                   max_sequence_length=max_sequence_length)
        cond.prefetch(expected_branches(spec, negatives is not None))
        dtype = cond["positive"]["encoder_hidden_states"].dtype
        latents = family.prepare_latents(batch, height, width, dtype, device, generator, latents)
        on_step = None
        if callback is not None:
            def on_step(k, t, lat, denoised):
                out = callback(self, k, t, {"latents": lat, "denoised": denoised})
                return (out or {}).get("latents")
        capture = self._attention_capture(latent_hw) if capture_attention else contextlib.nullcontext()
        with pipe.progress_bar(total=steps) as bar, capture:
            latents = denoise(family, adapter, run, cond, latents, timesteps, steps,
                              step_kwargs(adapter.scheduler, generator, eta), attention_kwargs, bar, on_step,
                              before_model=capture.begin if capture_attention else None)
        images, nsfw = family.decode(latents, output_type, generator)
        pipe.maybe_free_model_hooks()
        settings = {
            "negguide": __version__, "pipeline": type(pipe).__name__, "mode_label": mode_label(spec),
            "guidance": spec.to_dict(), "prompt": prompts, "negative_prompt": negatives,
            "num_images_per_prompt": images_per_prompt, "steps": steps, "scheduler": friendly_name(adapter.scheduler),
            "sampler": a1111_name(adapter.scheduler), "stochastic": adapter.sampler.injects_noise, "eta": eta,
            "height": height, "width": width, "seeds": _seeds(generator),
            "per_image_generators": isinstance(generator, list), "tracker": run.tracker_name(),
            "average_extra_rows": run.average_extra_rows(), "dtype": str(dtype).replace("torch.", ""),
        }
        attention = None
        if capture_attention:
            n = images_per_prompt
            texts = {"positive": [p for p in prompts for _ in range(n)],
                     "negative": [q for q in (negatives or [""] * len(prompts)) for _ in range(n)],
                     "empty": [""] * batch}
            attention = capture.result(texts, pipe.tokenizer)
        return NegGuideOutput(images=images, records=run.records, settings=settings, nsfw_content_detected=nsfw,
                              attention=attention)

    def _attention_capture(self, latent_hw):
        from .attention import AttentionCapture

        if self.family.name not in ("sd", "sdxl"):
            raise ValueError(f"capture_attention reads a UNet's cross-attention layers; {type(self.pipe).__name__} "
                             "has none (SD3's joint attention mixes text and image tokens)")
        return AttentionCapture(self.pipe.unet, latent_hw)

    def scheduler_adapter(self, spec: GuidanceSpec | None = None, eta: float = 0.0) -> SchedulerAdapter:
        """The current scheduler as the core sees it; raises :class:`UnsupportedScheduler` for a scheduler (or a
        scheduler/mode pair) the front-end cannot drive."""
        adapter = SchedulerAdapter.of(self.pipe.scheduler, self.family.flow, eta)
        if spec is not None:
            try:
                check_compatible(spec, adapter.frame, adapter.sampler)
            except SettingsError as err:
                raise UnsupportedScheduler("; ".join(err.problems)) from None
        return adapter

    # --- diffusion-negative prompting --------------------------------------------------------------------------
    @torch.no_grad()
    def dnp(self, prompt: str | list[str], *, captioner=None, caption_prompt: str = "",
            dns_scale: float | None = None, guidance_scale: float | None = None, window=None,
            num_inference_steps: int | None = None, height: int | None = None, width: int | None = None,
            num_images_per_prompt: int = 1, generator=None, output_type: str = "pil", eta: float = 0.0,
            clip_skip: int | None = None, attention_kwargs: dict | None = None, max_sequence_length: int = 256,
            return_dict: bool = True):
        """Diffusion-negative prompting (Desai & Vasconcelos 2024, Sec. 3.5, auto-DNP): per image, a DNS image of
        ``prompt`` (what the model considers least like it), its caption ``n*`` by ``captioner`` (a transformers
        model name or any callable ``PIL.Image -> str``; default: the model folder's own captioner from its
        ``negguide.json``, else BLIP base), then the final image for ``(prompt, n*)`` with the same seed (plain
        negative prompt, windowed when ``window`` is given).

        Returns :class:`NegGuideOutput` with ``images`` (final), ``dns_images`` (PIL) and ``dnp_prompts``."""
        if captioner is None:
            captioner = self.defaults.get("captioner", DEFAULT_CAPTIONER)
        caption = captioner if callable(captioner) else load_captioner(captioner, prompt=caption_prompt)
        captioner_name = captioner if isinstance(captioner, str) else getattr(captioner, "__name__", "callable")
        prompts = [p for p in _as_list(prompt, "prompt") for _ in range(num_images_per_prompt)]
        generators = self._replayable(generator, len(prompts))
        states = [g.get_state() for g in generators]
        common = dict(num_inference_steps=num_inference_steps, height=height, width=width, eta=eta,
                      clip_skip=clip_skip, attention_kwargs=attention_kwargs, max_sequence_length=max_sequence_length)
        dns = self(prompts, mode="dns", dns_scale=dns_scale, guidance_scale=guidance_scale, generator=generators,
                   output_type="pil", **common)
        captions = [str(caption(image)).strip() for image in dns.images]
        for g, state in zip(generators, states, strict=True):
            g.set_state(state)
        final = self(prompts, captions, mode="windowed" if window is not None else "off", window=window,
                     guidance_scale=guidance_scale, generator=generators, output_type=output_type, **common)
        final.settings["dnp"] = {"captioner": captioner_name, "caption_prompt": caption_prompt,
                                 "dns_guidance": dns.settings["guidance"], "captions": captions}
        final.dns_images, final.dnp_prompts = dns.images, captions
        return final if return_dict else (final.images, dns.images, captions)

    @staticmethod
    def _replayable(generator, batch: int) -> list[torch.Generator]:
        """One generator per image whose state can be replayed for the final pass (paper: same seed). A single
        generator or None is split into per-image generators seeded from it."""
        if isinstance(generator, list):
            if len(generator) != batch:
                raise ValueError(f"{len(generator)} generators for {batch} images: pass one, or one per image")
            return generator
        seeds = torch.randint(0, 2**62, (batch,), generator=generator, device=generator.device if generator else None)
        return [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]
