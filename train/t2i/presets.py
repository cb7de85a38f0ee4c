"""Presets of the text-to-image testbed: every hyper-parameter of its three trained parts in one place.

* `cpu`: what the shipped model was trained with (2 CPU cores, a few hours in all; docs/t2i/testbed.md).
* `gpu`: the same networks with larger batches, sized to train in about 15 minutes on one data-centre GPU.
* `tiny`: minutes-scale networks and a handful of steps, for tests.

Architecture in short (why: docs/t2i/testbed.md): a Stable Diffusion pipeline in miniature, so every tool that
drives `StableDiffusionPipeline` drives the testbed unchanged: a 2x AutoencoderKL (32x32x3 images <-> 16x16x4
latents), a 3-layer CLIP text encoder with the testbed's own word-level tokenizer, and a UNet2DConditionModel
with cross-attention at 16x16 and 8x8.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from train.errors import UsageError
from train.presets import raise_first_failed


@dataclass(frozen=True)
class StageSchedule:
    """Optimisation of one trained part."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    checkpoint_every: int = 1000
    grad_clip: float = 1.0
    cooldown_steps: int = 0  # a constant-LR stage: linear decay to 0 over its last steps (warmup-stable-decay)

    def checks(self, name: str) -> list[tuple[bool, str]]:
        return [
            (self.steps >= 1, f"{name}: steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"{name}: batch size must be >= 1, got {self.batch_size}"),
            (0 < self.lr <= 1, f"{name}: lr must be in (0, 1], got {self.lr}"),
            (self.warmup_steps >= 0, f"{name}: warm-up steps must be >= 0, got {self.warmup_steps}"),
            (self.checkpoint_every >= 1, f"{name}: checkpoint_every must be >= 1, got {self.checkpoint_every}"),
            (0 <= self.cooldown_steps <= self.steps,
             f"{name}: cool-down steps must be in [0, steps = {self.steps}], got {self.cooldown_steps}"),
        ]


def vae_config(channels: tuple[int, int], latent_channels: int = 4) -> dict[str, Any]:
    """AutoencoderKL with one 2x downsampling (two blocks) and no attention: 32x32x3 <-> 16x16x4."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": latent_channels, "sample_size": 32,
        "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
        "block_out_channels": list(channels), "layers_per_block": 1, "norm_num_groups": min(32, channels[0]),
        "mid_block_add_attention": False,
    }


def text_config(width: int, layers: int, heads: int) -> dict[str, Any]:
    """CLIPTextConfig fields (vocabulary size and special ids are filled in from the tokenizer)."""
    return {"hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": layers,
            "num_attention_heads": heads, "projection_dim": width, "hidden_act": "quick_gelu"}


def unet_config(channels: tuple[int, int, int], cross_dim: int, layers_per_block: int = 1,
                heads: int = 4) -> dict[str, Any]:
    """UNet2DConditionModel on 16x16x4 latents: cross-attention (and self-attention) at 16x16 and 8x8, plain
    res blocks at 4x4. `attention_head_dim` is diffusers' (misnamed) number of heads."""
    return {
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": layers_per_block,
        "block_out_channels": list(channels),
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": cross_dim, "attention_head_dim": heads, "norm_num_groups": 32,
    }


@dataclass(frozen=True)
class T2IPreset:
    name: str
    detector_width: int
    detector: StageSchedule
    vae: dict[str, Any]
    vae_schedule: StageSchedule
    text: dict[str, Any]
    unet: dict[str, Any]
    diffusion: StageSchedule
    detector_decoded: StageSchedule  # the detector fine-tuned on decoded images (train/t2i/detector_decoded.py)
    ema_decay: float = 0.999
    cfg_dropout: float = 0.15  # share of captions replaced by "" (classifier-free guidance training)
    snr_gamma: float = 5.0  # min-SNR loss weighting (Hang et al. 2023); 0: plain epsilon MSE
    vae_kl_weight: float = 1e-6
    held_out_fraction: float = 0.1  # object pairs never shown together in training
    seed: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        checks = (self.detector.checks("detector") + self.vae_schedule.checks("vae")
                  + self.diffusion.checks("diffusion") + self.detector_decoded.checks("detector-decoded"))
        checks += [
            (0 < self.ema_decay < 1, f"ema_decay must be in (0, 1), got {self.ema_decay}"),
            (0 <= self.cfg_dropout < 1, f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}"),
            (self.snr_gamma >= 0, f"snr_gamma must be >= 0, got {self.snr_gamma}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
        ]
        raise_first_failed(checks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


T2I_PRESETS: dict[str, T2IPreset] = {
    p.name: p
    for p in [
        T2IPreset(
            name="cpu",
            detector_width=32,
            detector=StageSchedule(steps=8000, batch_size=128, lr=2e-3, warmup_steps=200),
            vae=vae_config((32, 64)),
            vae_schedule=StageSchedule(steps=3000, batch_size=64, lr=1e-3, warmup_steps=100),
            text=text_config(128, 3, 4),
            unet=unet_config((64, 128, 128), cross_dim=128),
            # 14,000 steps: the shipped model (the first checkpoint at the quality bar, docs/t2i/testbed.md)
            diffusion=StageSchedule(steps=14000, batch_size=64, lr=3e-4, warmup_steps=500, checkpoint_every=500),
            detector_decoded=StageSchedule(steps=1500, batch_size=128, lr=5e-4, warmup_steps=50, checkpoint_every=250),
        ),
        T2IPreset(
            name="gpu",
            detector_width=32,
            detector=StageSchedule(steps=6000, batch_size=256, lr=3e-3, warmup_steps=200),
            vae=vae_config((32, 64)),
            vae_schedule=StageSchedule(steps=3000, batch_size=256, lr=1e-3, warmup_steps=100),
            text=text_config(128, 3, 4),
            unet=unet_config((64, 128, 128), cross_dim=128),
            diffusion=StageSchedule(steps=15000, batch_size=256, lr=5e-4, warmup_steps=500, checkpoint_every=2000),
            detector_decoded=StageSchedule(steps=1500, batch_size=256, lr=1e-3, warmup_steps=50, checkpoint_every=500),
        ),
        T2IPreset(
            name="tiny",
            detector_width=8,
            detector=StageSchedule(steps=4, batch_size=8, lr=1e-3, checkpoint_every=2),
            vae=vae_config((32, 32)),
            vae_schedule=StageSchedule(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2),
            text=text_config(32, 1, 2),
            unet=unet_config((32, 32, 32), cross_dim=32, heads=2),
            diffusion=StageSchedule(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2),
            detector_decoded=StageSchedule(steps=2, batch_size=4, lr=1e-3, checkpoint_every=1),
        ),
    ]
}


def t2i_preset(name: str) -> T2IPreset:
    if name not in T2I_PRESETS:
        raise UsageError(f"unknown preset {name!r}: choose one of {', '.join(sorted(T2I_PRESETS))}")
    return T2I_PRESETS[name]
