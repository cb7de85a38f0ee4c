"""The detector adapted to decoded images: what every generated image is.

A generated image is the VAE's decoding of a latent, never a render: decoded scenes are slightly blurred, and a
detector trained on renders alone reads them 21% less often exactly (78.4% exact on VAE round trips of 1,000
renders, against 100% on the renders, though the round trips look the same: see docs/t2i/testbed.md). This
stage fine-tunes the finished detector with half of every batch passed through the trained VAE (encode, a
sample of the latent distribution, decode) and the other half rendered and mildly degraded as before, so that
it keeps reading renders as well. It starts from the detector stage's final weights and records their hash
and the VAE's, so a resume never mixes parts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from train.t2i.detector import WEIGHTS, Detector, DetectorStage, degrade, targets
from train.t2i.scenes import render, sample_scenes, to_unit

DECODED_SHARE = 0.5  # of every batch; the rest stays rendered


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class DecodedDetectorStage(DetectorStage):
    """The detector stage's loss and export, on half-decoded batches, from the detector's final weights."""

    name = "detector-decoded"
    salt = 3

    def __init__(self, preset, device: torch.device, detector_dir: Path, vae_dir: Path):
        from diffusers import AutoencoderKL

        super().__init__(preset, device)
        self.detector_weights = Path(detector_dir) / WEIGHTS
        self.vae_dir = Path(vae_dir)
        self.vae = AutoencoderKL.from_pretrained(self.vae_dir).to(device).eval().requires_grad_(False)

    @staticmethod
    def schedule_of(preset):
        return preset.detector_decoded

    def config(self):
        vae_weights = next(self.vae_dir.glob("*.safetensors"))
        return {"detector_width": self.preset.detector_width, "seed": self.preset.seed,
                "decoded_share": DECODED_SHARE, "init": _digest(self.detector_weights),
                "vae": _digest(vae_weights)}

    def build(self):
        detector = Detector(self.preset.detector_width)
        detector.load_state_dict(load_file(self.detector_weights))
        return nn.ModuleDict({"detector": detector})

    @torch.no_grad()
    def _round_trip(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        latents = self.vae.encode(x.to(self.device)).latent_dist
        noise = torch.randn(latents.mean.shape, generator=g).to(self.device)
        return self.vae.decode(latents.mean + latents.std * noise).sample.clamp(-1, 1)

    def data(self, g):
        scenes = sample_scenes(g, self.schedule.batch_size)
        return to_unit(render(scenes)), targets(scenes)

    def loss(self, nets, data, g, autocast):
        x, target = data
        decoded = round(DECODED_SHARE * len(x))
        x = torch.cat([self._round_trip(x[:decoded], g), degrade(x[decoded:], g).to(self.device)])
        return self.scored(nets, x, target, autocast)
