"""Tiny random diffusers pipelines built from configs, for tests and benchmarks (nothing is downloaded).

Test stand-ins (the benchmark imports them too). Weights are random (seeded); the CLIP tokenizer files come
from ``../shared/tokenizers/clip-vit-l-14`` (or ``$NEGGUIDE_SHARED/tokenizers/...``, or
``NEGGUIDE_CLIP_TOKENIZER``). Sizes:

``tiny``   SD-shaped UNet/MMDiT with 32/64 channels, 8x8 latents (16x16 images): a test runs in a second
``small``  64/128 channels, 32x32 latents (64x64 images): CPU benchmarks
``sd``     the SD 1.x UNet architecture (320-1280 channels, random weights), 64x64 latents: GPU benchmarks
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

SIZES = ("tiny", "small", "sd")
SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def find_tokenizer_dir() -> Path | None:
    """The CLIP tokenizer folder (``vocab.json`` + ``merges.txt``): ``$NEGGUIDE_CLIP_TOKENIZER``, else
    ``tokenizers/clip-vit-l-14`` of the shared folder (``$NEGGUIDE_SHARED``, else ``../shared``), else None."""
    from train.paths import shared_root

    env = os.environ.get("NEGGUIDE_CLIP_TOKENIZER")
    for c in ([Path(env)] if env else []) + [shared_root() / "tokenizers" / "clip-vit-l-14"]:
        if (c / "vocab.json").is_file() and (c / "merges.txt").is_file():
            return c
    return None


def clip_tokenizer():
    from transformers import CLIPTokenizer

    folder = find_tokenizer_dir()
    if folder is None:
        raise FileNotFoundError("CLIP tokenizer files (shared/tokenizers/clip-vit-l-14) not found; "
                                "set NEGGUIDE_CLIP_TOKENIZER to a folder with vocab.json and merges.txt")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _clip(tokenizer, hidden: int, projection: bool, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            projection_dim=hidden, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(seed: int, latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=latent_channels, norm_num_groups=8, sample_size=16, **extra).eval()


def _unet(size: str, cross_dim: int, seed: int, **extra):
    from diffusers import UNet2DConditionModel

    if size == "sd":
        shape = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64,
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=8)
    else:
        width = 32 if size == "tiny" else 64
        shape = dict(block_out_channels=(width, 2 * width), layers_per_block=1, sample_size=8 if size == "tiny" else 32,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                     norm_num_groups=min(32, width))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, cross_attention_dim=cross_dim, **shape, **extra).eval()
    with torch.no_grad():  # diffusers zero-initialises conv_out: random, so predictions depend on the prompt
        for p in unet.conv_out.parameters():
            p.normal_(0, 0.05)
    return unet


def tiny_sd(size: str = "tiny", seed: int = 0, scheduler=None):
    """A random StableDiffusionPipeline (eps prediction, SD's scaled-linear betas, Euler by default)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    tokenizer = clip_tokenizer()
    hidden = 768 if size == "sd" else 32
    return StableDiffusionPipeline(
        vae=_vae(seed), text_encoder=_clip(tokenizer, hidden, False, seed), tokenizer=tokenizer,
        unet=_unet(size, hidden, seed), scheduler=scheduler or EulerDiscreteScheduler(**SD_BETAS),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_sdxl(size: str = "tiny", seed: int = 0, scheduler=None):
    """A random StableDiffusionXLPipeline: two CLIP encoders (the second with projection), pooled text and
    size conditioning (``force_zeros_for_empty_prompt`` as in SDXL base)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    tokenizer = clip_tokenizer()
    hidden = 32
    time_dim = 8
    unet = _unet(size if size != "sd" else "small", 2 * hidden, seed, addition_embed_type="text_time",
                 addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=6 * time_dim + hidden,
                 use_linear_projection=True)
    return StableDiffusionXLPipeline(
        vae=_vae(seed), text_encoder=_clip(tokenizer, hidden, False, seed),
        text_encoder_2=_clip(tokenizer, hidden, True, seed + 1), tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=unet, scheduler=scheduler or EulerDiscreteScheduler(**SD_BETAS), force_zeros_for_empty_prompt=True)


def tiny_sd3(size: str = "tiny", seed: int = 0, scheduler=None):
    """A random StableDiffusion3Pipeline with two CLIP encoders and no T5 (SD3 supports dropping it)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = clip_tokenizer()
    hidden = 32
    torch.manual_seed(seed)
    side = 8 if size == "tiny" else 32
    transformer = SD3Transformer2DModel(sample_size=side, patch_size=1, in_channels=4, out_channels=4,
                                        num_layers=1 if size == "tiny" else 2, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=2 * hidden, pooled_projection_dim=2 * hidden,
                                        pos_embed_max_size=side).eval()
    with torch.no_grad():  # the output projection starts near zero: random, so predictions depend on the prompt
        transformer.proj_out.weight.normal_(0, 0.05)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(seed, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=_clip(tokenizer, hidden, True, seed), tokenizer=tokenizer,
        text_encoder_2=_clip(tokenizer, hidden, True, seed + 1), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None)


BUILDERS = {"sd": tiny_sd, "sdxl": tiny_sdxl, "sd3": tiny_sd3}
