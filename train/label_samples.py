"""`python -m train sample`: draw samples from a trained model/ and let a classifier label them.

Reports the class histogram, the mean top-class probability and the fraction labelled confidently
(top probability >= 0.9): the numbers the class-removal evaluation builds on.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DModel

from train.classifier_io import LoadedClassifier, load_classifier
from train.errors import UsageError
from train.model_dir import load_model_dir
from train.paths import make_folder_for_file
from train.sampling import sample, save_grid


def sample_and_label(
    model_dir: str | Path,
    classifier: str | Path | None,
    n: int = 256,
    steps: int = 100,
    seed: int = 0,
    grid: str | Path | None = None,
    cpu: bool = False,
) -> dict:
    # Every input is checked before sampling, which takes minutes on a CPU.
    if n < 1 or not 1 <= steps <= 1000:
        raise UsageError("--num must be >= 1 and --steps in 1..1000")
    if grid is not None:
        make_folder_for_file(grid, "--grid")
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    unet, scheduler = load_model_dir(model_dir, device)
    clf = load_classifier(classifier, device) if classifier is not None else None
    if clf is not None:
        check_classifier_fits(clf, unet, classifier)
    images = sample(unet, scheduler, n, steps, seed, device)
    report: dict = {"model": str(model_dir), "num_samples": n, "ddim_steps": steps}
    if grid is not None:
        save_grid(images[:64], Path(grid))
        report["grid"] = str(grid)
    if clf is not None:
        report |= label_report(clf, images, device)
    print(json.dumps(report))
    return report


def check_classifier_fits(clf: LoadedClassifier, unet: UNet2DModel, where: str | Path) -> None:
    made = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    expected = tuple(clf.config["input_shape"])
    if made != expected:
        raise UsageError(f"classifier {where} takes images of shape {expected}, the model makes {made}")


def label_report(clf: LoadedClassifier, images: torch.Tensor, device: torch.device) -> dict:
    probs = torch.cat([clf(images[i : i + 500].to(device)).float().cpu() for i in range(0, len(images), 500)])
    top, label = probs.max(dim=1)
    return {
        "class_histogram": torch.bincount(label, minlength=len(clf.classes)).tolist(),
        "classes": clf.classes,
        "mean_top_probability": round(top.mean().item(), 4),
        "fraction_confident_0.9": round((top >= 0.9).float().mean().item(), 4),
    }
