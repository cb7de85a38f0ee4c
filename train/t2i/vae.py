"""Stage `vae`: the testbed's 2x AutoencoderKL (32x32x3 scenes <-> 16x16x4 latents).

Reconstruction loss L1 + MSE with a tiny KL term (Stable Diffusion's VAE recipe without its perceptual and
adversarial terms, which flat procedural scenes do not need). The exported VAE's `scaling_factor` is set so that
latents of scenes have unit variance, as Stable Diffusion's 0.18215 does for its data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from train.t2i.scenes import held_out_pairs, render, sample_scenes, to_unit
from train.t2i.stage import Stage

SCALE_SAMPLES = 2048  # scenes whose latents set the scaling factor


class VAEStage(Stage):
    name = "vae"
    salt = 2

    @staticmethod
    def schedule_of(preset):
        return preset.vae_schedule

    def config(self):
        p = self.preset
        return {"vae": p.vae, "seed": p.seed, "kl_weight": p.vae_kl_weight, "held_out_fraction": p.held_out_fraction}

    def build(self):
        return torch.nn.ModuleDict({"vae": AutoencoderKL(**self.preset.vae)})

    def images(self, g: torch.Generator, n: int) -> torch.Tensor:
        """n rendered scenes in [-1, 1] (held-out pairs never together), drawn from `g`."""
        return to_unit(render(sample_scenes(g, n, held_out_pairs(self.preset.held_out_fraction))))

    def data(self, g):
        return self.images(g, self.schedule.batch_size)

    def loss(self, nets, data, g, autocast):
        x = data.to(self.device)
        vae = nets["vae"]
        with autocast():
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(x.device)
            recon = vae.decode(z).sample.float()
        kl = posterior.kl().mean() / x[0].numel()
        return (recon - x).abs().mean() + (recon - x).pow(2).mean() + self.preset.vae_kl_weight * kl

    @torch.no_grad()
    def export(self, nets, folder: Path) -> None:
        vae = nets["vae"].float()
        g = torch.Generator().manual_seed(self.preset.seed + 99)
        means = torch.cat([vae.encode(self.images(g, 256).to(self.device)).latent_dist.mean.cpu()
                           for _ in range(SCALE_SAMPLES // 256)])
        vae.register_to_config(scaling_factor=float(1.0 / means.std()))
        vae.save_pretrained(folder, safe_serialization=True)
