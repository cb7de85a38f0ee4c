"""The final `model/` folder of a DDPM run and how it is loaded back.

It holds diffusers' UNet2DModel and DDPMScheduler files (weights as safetensors only) and `sha256.json`, the
SHA-256 of every other file in it, written when the folder is saved and checked before it is loaded, as
checkpoints are: a truncated copy or a swapped file ends in one sentence, not in a traceback from diffusers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors import SafetensorError

from train.checkpoint import sha256_file
from train.errors import UsageError

HASHES = "sha256.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def record_hashes(folder: Path) -> None:
    """Write `sha256.json` for every file in `folder` and its subfolders, keyed by relative path (call it last,
    once the folder is complete)."""
    folder = Path(folder)
    digests = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
               if p.is_file() and p != folder / HASHES}
    (folder / HASHES).write_text(json.dumps(digests, indent=1))


def verify_hashes(folder: Path) -> bool:
    """True when every file recorded in `sha256.json` is present and matches; False when there is no record
    (a folder saved before hashes were recorded); a UsageError when anything differs."""
    record = folder / HASHES
    if not record.is_file():
        return False
    try:
        digests = dict(json.loads(record.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"{folder} is corrupt: {HASHES} unreadable ({err})") from err
    for name, digest in digests.items():
        if not (folder / name).is_file():
            raise UsageError(f"{folder} is incomplete: {name} is missing")
        if sha256_file(folder / name) != digest:
            raise UsageError(f"{folder} is corrupt: {name} does not match its recorded SHA-256")
    return True


def load_model_dir(model_dir: str | Path, device: torch.device) -> tuple[UNet2DModel, DDPMScheduler]:
    """The UNet (in eval mode, on `device`) and noise scheduler of a `model/` folder, verified first."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"{model_dir} is not a model/ folder written by `python -m train ddpm`")
    if not (model_dir / WEIGHTS).is_file():
        raise UsageError(f"{model_dir} has no {WEIGHTS} (only safetensors weights are loaded, never pickle)")
    if not verify_hashes(model_dir):
        warning = f"warning: {model_dir} has no {HASHES} (saved by an older version): loading it unverified"
        print(warning, file=sys.stderr)
    try:
        unet = UNet2DModel.from_pretrained(model_dir, use_safetensors=True)
        scheduler = DDPMScheduler.from_pretrained(model_dir)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, SafetensorError) as err:
        reason = " ".join(str(err).split())  # diffusers' messages span several lines
        raise UsageError(f"{model_dir} cannot be loaded: {reason}") from err
    return unet.to(device).eval(), scheduler
