"""Training of negguide's evaluation models: MNIST / CIFAR-10 DDPMs (all classes or one) and classifiers.

Commands: `python -m train --help`. Python API: `load_classifier(path)` -> callable on images in [-1, 1]
returning class probabilities. Heavy imports (diffusers, accelerate) happen only where needed.
"""

from train.classifier_io import load_classifier
from train.errors import UsageError

__all__ = ["load_classifier", "UsageError"]
