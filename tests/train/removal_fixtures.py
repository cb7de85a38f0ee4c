"""Tiny random models of a class-removal study, saved as the train commands save them (tests only)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from train.classifier_io import NormalizedClassifier, save_classifier
from train.classifier_nets import build
from train.model_dir import record_hashes
from train.presets import DDPM_PRESETS


def tiny_model_dir(folder: Path, seed: int) -> Path:
    """A random mnist-tiny UNet with the training schedule (linear betas, T = 1000), as `train ddpm` saves it."""
    torch.manual_seed(seed)
    unet = UNet2DModel(**DDPM_PRESETS["mnist-tiny"].unet)
    unet.save_pretrained(folder, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear").save_pretrained(
        folder)
    record_hashes(folder)
    return folder


def tiny_classifier_dir(folder: Path, seed: int = 0) -> Path:
    """A random MNIST CNN (width 4) saved as `train classifier` saves one."""
    torch.manual_seed(seed)
    kwargs = {"width": 4, "num_classes": 10}
    model = NormalizedClassifier(build("mnist_cnn", **kwargs), [0.13], [0.31]).eval()
    config = {"arch": "mnist_cnn", "arch_kwargs": kwargs, "dataset": "mnist", "classes": [str(i) for i in range(10)],
              "input_shape": [1, 28, 28], "input_range": [-1.0, 1.0], "mean": [0.13], "std": [0.31],
              "tta_hflip": False, "tta_translate": 0}
    return save_classifier(model, config, folder)


def study_dirs(root: Path) -> dict[str, Path]:
    """unconditional, forget, oracle model folders and a classifier under ``root``."""
    return {"uncond": tiny_model_dir(root / "uncond", 1), "forget": tiny_model_dir(root / "forget", 2),
            "oracle": tiny_model_dir(root / "oracle", 3), "classifier": tiny_classifier_dir(root / "classifier")}
