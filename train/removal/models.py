"""The networks of a class-removal study, loaded from `python -m train ddpm` model/ folders (safetensors only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from negguide.schedules import DiscreteSchedule
from train.errors import UsageError

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler_config.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_dir(folder: str | Path, option: str) -> Path:
    """A model/ folder written by `python -m train ddpm` (UNet config and safetensors weights, scheduler config):
    a clear error naming the option, before anything is loaded."""
    folder = Path(folder)
    missing = [name for name in ("config.json", UNET_WEIGHTS, SCHEDULER_CONFIG) if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"{option} {folder}: not a model/ folder of `python -m train ddpm` (missing "
                         f"{', '.join(missing)})")
    return folder


def schedule_of(folder: Path) -> DiscreteSchedule:
    """The training schedule from the model's scheduler_config.json (linear, scaled_linear or cosine betas)."""
    config = json.loads((folder / SCHEDULER_CONFIG).read_text())
    kind = {"squaredcos_cap_v2": "cosine"}.get(config.get("beta_schedule", "linear"), config.get("beta_schedule"))
    if config.get("prediction_type", "epsilon") != "epsilon":
        raise UsageError(f"{folder}: the study samples epsilon-prediction DDPMs, this one predicts "
                         f"{config['prediction_type']}")
    try:
        return DiscreteSchedule.from_kind(kind, config["num_train_timesteps"], config["beta_start"],
                                          config["beta_end"])
    except (KeyError, ValueError) as err:
        raise UsageError(f"{folder}/{SCHEDULER_CONFIG}: unusable schedule ({err})") from err


def load_unet(folder: Path, device: torch.device):
    from diffusers import UNet2DModel

    try:
        return UNet2DModel.from_pretrained(folder, use_safetensors=True).to(device).eval().requires_grad_(False)
    except (OSError, ValueError, RuntimeError) as err:
        raise UsageError(f"{folder}: the UNet does not load ({' '.join(str(err).split())[:300]})") from err


@dataclass
class StudyModels:
    """The unconditional model, the model of the class to forget, and optionally the retrained oracle."""

    unconditional: torch.nn.Module
    forget: torch.nn.Module
    oracle: torch.nn.Module | None
    schedule: DiscreteSchedule
    hashes: dict[str, str]  # role -> SHA-256 of the weights file
    image_shape: tuple[int, int, int]


def load_study_models(unconditional: str | Path, forget: str | Path, oracle: str | Path | None,
                      device: torch.device) -> StudyModels:
    folders = {"unconditional": check_model_dir(unconditional, "--uncond"),
               "forget": check_model_dir(forget, "--forget")}
    if oracle is not None:
        folders["oracle"] = check_model_dir(oracle, "--oracle")
    schedules = {role: schedule_of(folder) for role, folder in folders.items()}
    reference = schedules["unconditional"].betas
    for role, schedule in schedules.items():
        if not torch.equal(schedule.betas, reference):
            raise UsageError(f"the {role} model was trained with another noise schedule than the unconditional "
                             "one: guidance mixes predictions at the same timestep, so they must match")
    hashes = {role: file_sha256(folder / UNET_WEIGHTS) for role, folder in folders.items()}
    nets = {role: load_unet(folder, device) for role, folder in folders.items()}
    shapes = {role: (n.config.in_channels, n.config.sample_size, n.config.sample_size) for role, n in nets.items()}
    if len(set(shapes.values())) != 1:
        raise UsageError(f"the models generate different image shapes: {shapes}")
    return StudyModels(nets["unconditional"], nets["forget"], nets.get("oracle"), schedules["unconditional"], hashes,
                       shapes["unconditional"])
