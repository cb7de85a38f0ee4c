"""What each image of a cell shows, read by the detector, and the rates over a cell with their intervals.

Per image (``outcome``):
* ``removed``: object cases - the negated object (shape and colour) is not found; attribute cases - the target
  object is found and its texture is not the negated one; concept cases - no red object is found;
* ``preserved``: every other named object found, the background as said, and (attribute cases) the target object
  itself still found; concept cases: as many objects as the prompt has (unnamed) or the non-red one (named);
* ``kept_exact``: exact match of the image with what a perfect removal shows (:meth:`Case.kept`);
* ``adherent``: exact match with the prompt itself (adherence cases).
SSIM (torchmetrics, data range 1) compares an image with the same seed's image of the reference method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from train.t2i.adherence import score
from train.t2i.captions import ObjectSpec
from train.t2i.stats import Rate, cluster_bootstrap
from train.t2i.study.cases import Case


@dataclass(frozen=True)
class Outcome:
    removed: bool
    preserved: bool
    kept_exact: bool
    adherent: bool


def _found(found: dict, spec: ObjectSpec) -> dict | None:
    return next((o for o in found["objects"] if (o["shape"], o["colour"]) == (spec.shape, spec.colour)), None)


def outcome(case: Case, found: dict) -> Outcome:
    spec = case.spec
    bg_ok = spec.background is None or spec.background.accepts(found["background"], found["tone"])
    adherent = score(spec, found).exact
    kept_exact = score(case.kept(), found).exact
    if case.kind in ("object", "attribute"):
        others = [o for o in spec.objects if o.named and (o.shape, o.colour) != (case.target.shape, case.target.colour)]
        others_ok = all(_found(found, o) is not None for o in others) and bg_ok
        target = _found(found, case.target)
        if case.kind == "object":
            return Outcome(target is None, others_ok, kept_exact, adherent)
        removed = target is not None and target["texture"] != case.negative
        return Outcome(removed, others_ok and target is not None, kept_exact, adherent)
    if case.kind.startswith("concept"):
        red = any(o["colour"] == "red" for o in found["objects"])
        if case.kind == "concept-unnamed":
            preserved = len(found["objects"]) == spec.count and bg_ok
        else:
            other = next(o for o in spec.objects if o.colour != "red")
            preserved = _found(found, other) is not None and bg_ok
        return Outcome(not red, preserved, kept_exact, adherent)
    return Outcome(False, adherent, adherent, adherent)


def outcomes(cases: list[Case], seeds: int, found: list[dict]) -> list[Outcome]:
    return [outcome(cases[k // seeds], f) for k, f in enumerate(found)]


def rate(values, seeds: int) -> Rate:
    """A share over images with its prompt-clustered bootstrap interval."""
    values = [float(v) for v in values]
    return cluster_bootstrap(values, [1.0] * len(values), [k // seeds for k in range(len(values))])


def ssim(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of uint8 images against the same seeds' reference images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(images.float() / 255, reference.float() / 255, data_range=1.0,
                                               reduction="none")
