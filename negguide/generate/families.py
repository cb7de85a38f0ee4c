"""Pipeline families: what differs between StableDiffusion, StableDiffusionXL and StableDiffusion3 pipelines.

A family adapter knows, for one pipeline object, how to

* encode a branch's conditioning with the pipeline's own ``encode_prompt`` (positive prompt, the user's
  negative prompt, and the "empty" branch: exactly what the pipeline uses for an empty negative prompt, i.e.
  its ``negative_prompt=None`` path: SDXL's ``force_zeros_for_empty_prompt`` zeros, SD3's and SD1's encoded
  ``""``);
* call its denoiser (UNet / transformer) once on stacked rows with per-row conditioning;
* set the timesteps (SD3's resolution-dependent shift), prepare the initial latents, decode.

Every guidance decision stays in :class:`negguide.run.GuidanceRun`; nothing here knows the modes.
"""

from __future__ import annotations

import torch

POSITIVE, NEGATIVE, EMPTY = "positive", "negative", "empty"


class UnsupportedPipeline(ValueError):
    """The pipeline is not one of the three families, or uses a feature the front-end does not drive."""


class Conditioning:
    """Per-branch conditioning tensors (``[B, ...]`` per key), encoded on first use, and their row stacks.

    ``encode(branch) -> {name: tensor [P, ...]}`` encodes ``P`` prompts; rows are repeated per image
    (prompt-major, as diffusers' ``num_images_per_prompt``)."""

    def __init__(self, encode, images_per_prompt: int, shared: dict | None = None):
        self._encode, self._n = encode, images_per_prompt
        self._shared = shared or {}
        self._branches: dict[str, dict[str, torch.Tensor]] = {}
        self._stacks: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    def __getitem__(self, branch: str) -> dict[str, torch.Tensor]:
        if branch not in self._branches:
            encoded = self._encode(branch)
            self._branches[branch] = {k: v.repeat_interleave(self._n, dim=0) for k, v in encoded.items()}
        return self._branches[branch]

    def prefetch(self, branches) -> None:
        """Encode these branches now (before the loop: with model CPU offload, a text encoder called mid-loop would
        swap the denoiser out). Any other branch a plan asks for is still encoded on first use."""
        for branch in branches:
            self[branch]

    def stacked(self, layout: tuple[tuple[str, int], ...]) -> dict[str, torch.Tensor]:
        """Every key's rows for a plan's row layout (``(branch, image)`` per row, see
        :meth:`negguide.run.Plan.row_layout`), plus the shared tensors, one row each. Cached per layout: a run
        asks for a handful of layouts (with and without probe rows)."""
        if layout not in self._stacks:
            branches = list(dict.fromkeys(b for b, _ in layout))
            stack = {k: torch.cat([self[b][k][i:i + 1] for b, i in layout]) for k in self[branches[0]]}
            for k, v in self._shared.items():  # one row for every image (SDXL's size conditioning)
                stack[k] = v.repeat(len(layout) // v.shape[0], *([1] * (v.ndim - 1)))
            self._stacks[layout] = stack
        return self._stacks[layout]


class Family:
    """Base adapter. ``pipe`` is the diffusers pipeline; modules are shared, never copied."""

    name = "base"
    flow = False
    default_guidance_scale = 7.5
    default_steps = 50

    def __init__(self, pipe):
        self.pipe = pipe

    @property
    def denoiser(self):
        return self.pipe.unet

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def check(self) -> None:
        unet = self.pipe.unet
        if getattr(unet.config, "time_cond_proj_dim", None) is not None:
            raise UnsupportedPipeline("this UNet is guidance-distilled (LCM-style, time_cond_proj_dim is set): it "
                                      "takes the CFG scale as an input and has no separate branches to guide")

    # --- sizes, timesteps, latents ------------------------------------------------------------------------
    def default_size(self) -> tuple[int, int]:
        size = self.pipe.default_sample_size * self.pipe.vae_scale_factor
        return size, size

    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor

    def latent_channels(self) -> int:
        return self.denoiser.config.in_channels

    def set_timesteps(self, steps: int, device, latent_hw: tuple[int, int]) -> torch.Tensor:
        """The scheduler's timesteps for ``steps`` steps (``latent_hw``: the latent size, SD3's shift needs it)."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return scheduler.timesteps

    def prepare_latents(self, batch: int, height: int, width: int, dtype, device, generator, latents=None):
        return self.pipe.prepare_latents(batch, self.latent_channels(), height, width, dtype, device, generator,
                                         latents)

    # --- conditioning and the model call ----------------------------------------------------------------
    def conditioning(self, prompts: list[str], negatives: list[str] | None, images_per_prompt: int, *,
                     height: int, width: int, clip_skip: int | None = None, attention_kwargs: dict | None = None,
                     max_sequence_length: int = 256) -> Conditioning:
        """``prompts`` (P of them) and ``negatives`` (P, or None: the pipeline's empty negative); every branch's
        rows are repeated ``images_per_prompt`` times."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: dict, attention_kwargs: dict | None) -> torch.Tensor:
        raise NotImplementedError

    # --- output ---------------------------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor, output_type: str, generator=None):
        """Latents -> ``(images in output_type, nsfw flags or None)``, as the pipeline's own tail does."""
        raise NotImplementedError


def _lora_scale(attention_kwargs: dict | None):
    return attention_kwargs.get("scale") if attention_kwargs else None


class StableDiffusionFamily(Family):
    """StableDiffusionPipeline (SD 1.x / 2.x, eps or v prediction)."""

    name = "sd"

    def default_size(self) -> tuple[int, int]:
        size = self.pipe.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        return h * self.pipe.vae_scale_factor, w * self.pipe.vae_scale_factor

    def conditioning(self, prompts, negatives, images_per_prompt, *, height, width, clip_skip=None,
                     attention_kwargs=None, max_sequence_length=256):
        pipe, device, lora = self.pipe, self.device, _lora_scale(attention_kwargs)
        cache = {}

        def encode(branch):
            if POSITIVE not in cache:
                cache[POSITIVE] = pipe.encode_prompt(prompts, device, 1, False, lora_scale=lora, clip_skip=clip_skip)[0]
            if branch == POSITIVE:
                return {"encoder_hidden_states": cache[POSITIVE]}
            neg = negatives if branch == NEGATIVE else None
            _, embeds = pipe.encode_prompt(None, device, 1, True, neg, prompt_embeds=cache[POSITIVE], lora_scale=lora)
            return {"encoder_hidden_states": embeds}

        return Conditioning(encode, images_per_prompt)

    def predict(self, x, t, cond, attention_kwargs):
        return self.pipe.unet(x, t, encoder_hidden_states=cond["encoder_hidden_states"],
                              cross_attention_kwargs=attention_kwargs, return_dict=False)[0]

    def decode(self, latents, output_type, generator=None):
        pipe = self.pipe
        if output_type == "latent":
            return latents, None
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
        image, nsfw = pipe.run_safety_checker(image, self.device, latents.dtype)
        denormalize = [True] * image.shape[0] if nsfw is None else [not flag for flag in nsfw]
        return pipe.image_processor.postprocess(image, output_type=output_type, do_denormalize=denormalize), nsfw


class StableDiffusionXLFamily(Family):
    """StableDiffusionXLPipeline: two CLIP encoders, pooled embeddings and size conditioning (add_time_ids)."""

    name = "sdxl"
    default_guidance_scale = 5.0

    def conditioning(self, prompts, negatives, images_per_prompt, *, height, width, clip_skip=None,
                     attention_kwargs=None, max_sequence_length=256):
        pipe, device, lora = self.pipe, self.device, _lora_scale(attention_kwargs)
        cache = {}

        def encode(branch):
            if POSITIVE not in cache:
                embeds, _, pooled, _ = pipe.encode_prompt(prompts, None, device, 1, False, lora_scale=lora,
                                                          clip_skip=clip_skip)
                cache[POSITIVE] = (embeds, pooled)
            if branch == POSITIVE:
                embeds, pooled = cache[POSITIVE]
            else:
                neg = negatives if branch == NEGATIVE else None
                _, embeds, _, pooled = pipe.encode_prompt(None, None, device, 1, True, neg, None,
                                                          prompt_embeds=cache[POSITIVE][0],
                                                          pooled_prompt_embeds=cache[POSITIVE][1], lora_scale=lora)
            return {"encoder_hidden_states": embeds, "text_embeds": pooled}

        return Conditioning(encode, images_per_prompt, shared={"time_ids": self._time_ids(height, width)})

    def _time_ids(self, height: int, width: int) -> torch.Tensor:
        pipe = self.pipe
        if pipe.text_encoder_2 is not None:
            projection_dim = pipe.text_encoder_2.config.projection_dim
        else:
            projection_dim = pipe.unet.add_embedding.linear_1.in_features - 6 * pipe.unet.config.addition_time_embed_dim
        size = (height, width)
        dtype = pipe.text_encoder_2.dtype if pipe.text_encoder_2 is not None else pipe.unet.dtype
        ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=dtype,
                                     text_encoder_projection_dim=projection_dim)
        return ids.to(self.device)

    def predict(self, x, t, cond, attention_kwargs):
        added = {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}
        return self.pipe.unet(x, t, encoder_hidden_states=cond["encoder_hidden_states"], added_cond_kwargs=added,
                              cross_attention_kwargs=attention_kwargs, return_dict=False)[0]

    def decode(self, latents, output_type, generator=None):
        pipe = self.pipe
        if output_type == "latent":
            return latents, None
        vae = pipe.vae
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast
        if upcast:
            vae.to(dtype=torch.float32)
            latents = latents.to(torch.float32)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        if upcast:
            vae.to(dtype=torch.float16)
        if getattr(pipe, "watermark", None) is not None:
            image = pipe.watermark.apply_watermark(image)
        return pipe.image_processor.postprocess(image, output_type=output_type), None


class StableDiffusion3Family(Family):
    """StableDiffusion3Pipeline: MMDiT transformer, rectified flow, CLIP-L/G (+ optional T5)."""

    name = "sd3"
    flow = True
    default_guidance_scale = 7.0
    default_steps = 28

    @property
    def denoiser(self):
        return self.pipe.transformer

    def check(self) -> None:
        pass

    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor * self.pipe.transformer.config.patch_size

    def set_timesteps(self, steps, device, latent_hw):
        scheduler = self.pipe.scheduler
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            patch = self.pipe.transformer.config.patch_size
            seq_len = (latent_hw[0] // patch) * (latent_hw[1] // patch)
            kwargs["mu"] = calculate_shift(seq_len, scheduler.config.get("base_image_seq_len", 256),
                                           scheduler.config.get("max_image_seq_len", 4096),
                                           scheduler.config.get("base_shift", 0.5),
                                           scheduler.config.get("max_shift", 1.16))
        scheduler.set_timesteps(steps, device=device, **kwargs)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return scheduler.timesteps

    def conditioning(self, prompts, negatives, images_per_prompt, *, height, width, clip_skip=None,
                     attention_kwargs=None, max_sequence_length=256):
        pipe, device, lora = self.pipe, self.device, _lora_scale(attention_kwargs)
        cache = {}

        def encode(branch):
            if POSITIVE not in cache:
                embeds, _, pooled, _ = pipe.encode_prompt(prompts, None, None, device=device, num_images_per_prompt=1,
                                                          do_classifier_free_guidance=False, clip_skip=clip_skip,
                                                          max_sequence_length=max_sequence_length, lora_scale=lora)
                cache[POSITIVE] = (embeds, pooled)
            if branch == POSITIVE:
                embeds, pooled = cache[POSITIVE]
            else:
                neg = negatives if branch == NEGATIVE else None
                _, embeds, _, pooled = pipe.encode_prompt(None, None, None, device=device, num_images_per_prompt=1,
                                                          do_classifier_free_guidance=True, negative_prompt=neg,
                                                          prompt_embeds=cache[POSITIVE][0],
                                                          pooled_prompt_embeds=cache[POSITIVE][1],
                                                          max_sequence_length=max_sequence_length, lora_scale=lora)
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

        return Conditioning(encode, images_per_prompt)

    def predict(self, x, t, cond, attention_kwargs):
        return self.pipe.transformer(hidden_states=x, timestep=t.expand(x.shape[0]),
                                     encoder_hidden_states=cond["encoder_hidden_states"],
                                     pooled_projections=cond["pooled_projections"],
                                     joint_attention_kwargs=attention_kwargs, return_dict=False)[0]

    def decode(self, latents, output_type, generator=None):
        pipe = self.pipe
        if output_type == "latent":
            return latents, None
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        image = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type=output_type), None


FAMILIES_BY_CLASS = {
    "StableDiffusionPipeline": StableDiffusionFamily,
    "StableDiffusionXLPipeline": StableDiffusionXLFamily,
    "StableDiffusion3Pipeline": StableDiffusion3Family,
}


def family_of(pipe) -> Family:
    """The adapter for a pipeline object (exact classes: img2img / inpaint / ControlNet variants differ)."""
    cls = FAMILIES_BY_CLASS.get(type(pipe).__name__)
    if cls is None:
        raise UnsupportedPipeline(f"{type(pipe).__name__} is not supported; negguide drives "
                                  f"{', '.join(FAMILIES_BY_CLASS)}")
    family = cls(pipe)
    family.check()
    return family
