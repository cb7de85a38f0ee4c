"""The networks of a class-removal study, loaded from `python -m train ddpm` model/ folders (safetensors only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from negguide.schedules import DiscreteSchedule
from train.checkpoint import sha256_file
from train.errors import UsageError
from train.model_dir import WEIGHTS, load_model_dir

BETA_KINDS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


def schedule_of(scheduler, folder: Path) -> DiscreteSchedule:
    """The training schedule of a model's DDPMScheduler config, as an explicit float64 table."""
    config = scheduler.config
    if config.prediction_type != "epsilon":
        raise UsageError(f"{folder}: the study samples epsilon-prediction DDPMs, this one predicts "
                         f"{config.prediction_type}")
    if config.beta_schedule not in BETA_KINDS:
        raise UsageError(f"{folder}: beta schedule {config.beta_schedule!r} is not one of {', '.join(BETA_KINDS)}")
    return DiscreteSchedule.from_kind(BETA_KINDS[config.beta_schedule], config.num_train_timesteps,
                                      config.beta_start, config.beta_end)


def load_verified(folder: str | Path, option: str, device: torch.device):
    """UNet (frozen, eval) and schedule of a model/ folder, its recorded hashes checked (train.model_dir); errors
    name the option."""
    try:
        unet, scheduler = load_model_dir(folder, device)
        return unet.requires_grad_(False), schedule_of(scheduler, Path(folder))
    except UsageError as err:
        raise UsageError(f"{option} {err}") from err


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
    folders = {"unconditional": (unconditional, "--uncond"), "forget": (forget, "--forget")}
    if oracle is not None:
        folders["oracle"] = (oracle, "--oracle")
    loaded = {role: load_verified(folder, option, device) for role, (folder, option) in folders.items()}
    nets = {role: unet for role, (unet, _) in loaded.items()}
    schedules = {role: schedule for role, (_, schedule) in loaded.items()}
    reference = schedules["unconditional"].betas
    for role, schedule in schedules.items():
        if not torch.equal(schedule.betas, reference):
            raise UsageError(f"the {role} model was trained with another noise schedule than the unconditional "
                             "one: guidance mixes predictions at the same timestep, so they must match")
    hashes = {role: sha256_file(Path(folder) / WEIGHTS) for role, (folder, _) in folders.items()}
    shapes = {role: (n.config.in_channels, n.config.sample_size, n.config.sample_size) for role, n in nets.items()}
    if len(set(shapes.values())) != 1:
        raise UsageError(f"the models generate different image shapes: {shapes}")
    return StudyModels(nets["unconditional"], nets["forget"], nets.get("oracle"), schedules["unconditional"], hashes,
                       shapes["unconditional"])
