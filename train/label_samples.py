"""`python -m train sample`: draw samples from a trained model/ and let a classifier label them.

Reports the class histogram, the mean top-class probability and the fraction labelled confidently
(top probability >= 0.9): the numbers the class-removal evaluation builds on.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from train.classifier_io import load_classifier
from train.errors import UsageError
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
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"{model_dir} is not a model/ folder written by `python -m train ddpm`")
    if n < 1 or not 1 <= steps <= 1000:
        raise UsageError("--num must be >= 1 and --steps in 1..1000")
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    unet = UNet2DModel.from_pretrained(model_dir).to(device).eval()
    scheduler = DDPMScheduler.from_pretrained(model_dir)
    images = sample(unet, scheduler, n, steps, seed, device)
    report: dict = {"model": str(model_dir), "num_samples": n, "ddim_steps": steps}
    if grid is not None:
        save_grid(images[:64], Path(grid))
        report["grid"] = str(grid)
    if classifier is not None:
        clf = load_classifier(classifier, device)
        probs = torch.cat([clf(images[i : i + 500].to(device)).float().cpu() for i in range(0, n, 500)])
        top, label = probs.max(dim=1)
        report |= {
            "class_histogram": torch.bincount(label, minlength=len(clf.classes)).tolist(),
            "classes": clf.classes,
            "mean_top_probability": round(top.mean().item(), 4),
            "fraction_confident_0.9": round((top >= 0.9).float().mean().item(), 4),
        }
    print(json.dumps(report))
    return report
