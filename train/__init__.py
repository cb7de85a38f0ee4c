"""Training of negguide's evaluation models: MNIST / CIFAR-10 DDPMs (all classes or one) and classifiers.

Commands: `python -m train --help`. Python API: `load_classifier(path)` -> callable on images in [-1, 1]
returning class probabilities. Heavy imports (torch, diffusers, accelerate) happen only where needed: `python -m
train` imports this package before its CLI, which parses its arguments (`--help`) before importing torch.
"""

from train.errors import UsageError


def __getattr__(name: str):
    if name == "load_classifier":  # imports torch
        from train.classifier_io import load_classifier

        return load_classifier
    raise AttributeError(f"module 'train' has no attribute {name!r}")


__all__ = ["load_classifier", "UsageError"]
