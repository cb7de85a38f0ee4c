"""Saving a trained classifier as safetensors + JSON, and `load_classifier` for the evaluation code.

The saved network always takes images in [-1, 1] (the range the DDPMs generate): the per-channel normalisation
it was trained with is part of the module (buffers `mean`, `std`) and recorded in the JSON config,
so there is no separate preprocessing step to get wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from train.classifier_nets import build
from train.errors import UsageError

WEIGHTS = "classifier.safetensors"
CONFIG = "classifier.json"


class NormalizedClassifier(nn.Module):
    """Input in [-1, 1], (N, C, H, W) -> logits; normalises with the training set's mean and std first."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def save_classifier(model: NormalizedClassifier, config: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS, metadata={"config": json.dumps(config)})
    (out_dir / CONFIG).write_text(json.dumps(config, indent=1))
    return out_dir


def tta_logits(model: nn.Module, images: torch.Tensor, hflip: bool, translate: int) -> torch.Tensor:
    """Test-time augmentation: average the logits over the mirror image and, with `translate` > 0, give half the
    weight to copies shifted by `translate` pixels up-left and down-right (reflect-padded), as airbench does."""

    def mean_over_flips(x: torch.Tensor) -> torch.Tensor:
        return (model(x) + model(x.flip(3))) / 2 if hflip else model(x)

    logits = mean_over_flips(images)
    if translate > 0:
        t, (h, w) = translate, images.shape[2:]
        padded = torch.nn.functional.pad(images, (t, t, t, t), mode="reflect")
        shifted = (mean_over_flips(padded[:, :, :h, :w]) + mean_over_flips(padded[:, :, 2 * t :, 2 * t :])) / 2
        logits = (logits + shifted) / 2
    return logits


class LoadedClassifier(nn.Module):
    """`clf(images)` -> class probabilities (N, num_classes); `images` in [-1, 1], shape (N, C, H, W)."""

    def __init__(self, model: NormalizedClassifier, config: dict[str, Any]):
        super().__init__()
        self.model = model.eval()
        self.config = config
        self.classes: list[str] = config["classes"]
        self.tta_hflip: bool = bool(config.get("tta_hflip", False))
        self.tta_translate: int = int(config.get("tta_translate", 0))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        p = self.model.mean
        expected = tuple(self.config["input_shape"])
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"classifier expects images of shape (N, {expected}), got {tuple(images.shape)}")
        images = images.to(device=p.device, dtype=p.dtype)
        return tta_logits(self.model, images, self.tta_hflip, self.tta_translate)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).softmax(dim=1)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> LoadedClassifier:
    """Load a classifier saved by `python -m train classifier` (its folder or its .safetensors file)."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise UsageError(f"no classifier at {path} (expected {WEIGHTS} in it)")
    try:
        with safe_open(weights, "pt") as f:
            config = json.loads(f.metadata()["config"])
        state = load_file(weights)
        model = NormalizedClassifier(build(config["arch"], **config["arch_kwargs"]), config["mean"], config["std"])
        model.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())  # load_state_dict lists mismatched keys over several lines
        raise UsageError(f"{weights} is not a classifier saved by this package: {reason}") from err
    return LoadedClassifier(model, config).to(device)
