"""What a point is measured with: the classifier, each feature network's references, the real-vs-real floor at
the point's sample count, and the bootstrap index draws every point with the same sample count shares.

Per feature network (``inception``, ``classifier``) and point:

* ``fid_<net>_kept`` / ``fid_<net>_all``: FID against the reference without / with the removed class (a fixed
  pseudo-random subset of the training split when the preset sets ``fid_reference_count``, else all of it);
* ``kid_<net>_kept``: KID against the same kept-class reference features (unbiased at any sample count);
* ``fid_<net>_balanced`` / ``kid_<net>_balanced``: the class-balanced variants (:mod:`train.removal.quality`);
* the floor: the same metrics of ``n`` held-out real images (the test split's kept classes; all classes for the
  ``all`` FID; a fixed pseudo-random subset, ``n`` = the point's sample count or the whole selection when it is
  smaller; real images are balanced by their true labels) against the same references. A generator can only be
  told apart from real data by how far it sits above this floor.

And the paired bootstrap resamples of every KID and of the kept / balanced FIDs (the preset's ``fid_resamples``
of them), on the index draws shared by all points with the same sample count, saved with the point for the
report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from train.removal import metrics as M
from train.removal.fid import FeatureSet, FeatureStats, compute_features, selection_features
from train.removal.paired import RESAMPLES, bootstrap_indices
from train.removal.quality import (
    FID_RESAMPLES,
    FidTerms,
    KidTerms,
    balance_units,
    counts_per_index,
    normalised_weights,
    reference_kernel_term,
)


@dataclass
class NetworkReference:
    """One feature network and its references: the kept-class features (KID, balance shares) and statistics
    (FID), the all-class statistics, the kept reference's own KID term and its class shares."""

    network: object
    kept: FeatureSet
    kept_stats: FeatureStats
    all_stats: FeatureStats
    kernel_term: float
    shares: np.ndarray


FEATURE_CHUNK = 250  # a point's images per feature call, and how often its features are checkpointed
Featurise = Callable[[], FeatureSet]  # one data selection's features, read from or written to the feature cache


def fill_feature_cache(selections: Sequence[Featurise], rank: int = 0, world: int = 1, wait=lambda: None) -> None:
    """Featurise this process's share of ``selections`` (each writes its own cache file), then wait for the
    others: afterwards every process reads every selection from the cache. Dealt out in turn, so the kept-class
    and all-class selections of one network, listed next to each other, go to two processes at once."""
    for featurise in selections[rank::world]:
        featurise()
    wait()


def kept_and_all_selections(network, dataset: str, removed: int, cache_dir: Path, data_dir, split: str = "train",
                            limit: int | None = None) -> tuple[Featurise, Featurise]:
    """One network's features of a split's kept-class and all-class selections (a reference's, a floor's)."""
    return tuple(functools.partial(selection_features, dataset, selection, network, cache_dir, data_dir, split=split,
                                   limit=limit)
                 for selection in (removed, None))


def build_network_reference(network, dataset: str, removed: int, cache_dir: Path, data_dir, limit: int | None,
                            num_classes: int, device: torch.device) -> NetworkReference:
    kept, every = (featurise() for featurise in kept_and_all_selections(network, dataset, removed, cache_dir,
                                                                         data_dir, limit=limit))
    shares = np.bincount(kept.labels.numpy(), minlength=num_classes).astype(np.float64)
    return NetworkReference(network, kept, kept.stats(), every.stats(),
                            reference_kernel_term(kept.features, device), shares / shares.sum())


@dataclass(frozen=True)
class FloorSource:
    """Where the held-out real images of the floor come from."""

    dataset: str
    data_dir: object
    cache_dir: Path
    split: str = "test"


def resample_counts(samples: int) -> np.ndarray:
    """``[RESAMPLES, samples]`` draw counts of each sample index: the same for every point of that size."""
    return counts_per_index(bootstrap_indices(samples, RESAMPLES, seed=0), samples)


def network_quality(name: str, ref: NetworkReference, features: torch.Tensor, labels: np.ndarray, removed: int,
                    counts: np.ndarray | None, device: torch.device, fid_resamples: int = FID_RESAMPLES
                    ) -> tuple[dict, dict]:
    """(values, resamples) of one network's metrics (FID kept and all, KID, balanced FID and KID) for one set of
    images; ``counts`` None: no resamples. FIDs go through :class:`FidTerms` (equal to fid.frechet_distance within
    1e-6, one eigen-decomposition instead of a 20-second ``sqrtm``)."""
    n = len(features)
    kid = KidTerms(features, ref.kept.features, ref.kernel_term, device)
    fid = FidTerms(features, ref.kept_stats.mean, ref.kept_stats.covariance)
    ones = np.ones((1, n))
    weights, squares = normalised_weights(ones)
    values = {f"fid_{name}_kept": float(fid.fid(weights, squares)[0]),
              f"fid_{name}_all": float(FidTerms(features, ref.all_stats.mean, ref.all_stats.covariance).fid(
                  weights, squares)[0]),
              f"kid_{name}_kept": float(kid.kid(weights)[0])}
    balanced, squares = normalised_weights(ones, balance_units(labels, ones, removed, ref.shares))
    values[f"fid_{name}_balanced"] = float(fid.fid(balanced, squares)[0])
    values[f"kid_{name}_balanced"] = float(kid.balanced_kid(ones, labels, removed, ref.shares)[0])
    resamples = {}
    if counts is not None:
        weights, squares = normalised_weights(counts)
        resamples[f"kid_{name}_kept"] = kid.kid(weights)
        if fid_resamples:
            resamples[f"fid_{name}_kept"] = fid.fid(weights[:fid_resamples], squares[:fid_resamples])
        weights, squares = normalised_weights(counts, balance_units(labels, counts, removed, ref.shares))
        resamples[f"kid_{name}_balanced"] = kid.balanced_kid(counts, labels, removed, ref.shares)
        if fid_resamples:
            resamples[f"fid_{name}_balanced"] = fid.fid(weights[:fid_resamples], squares[:fid_resamples])
    return values, resamples


class Evaluator:
    """Labels, class metrics and image quality of a point's samples: the classifier and the references, loaded
    once; the floor and the resample counts computed once per sample count."""

    def __init__(self, classifier, num_classes: int, removed: int, references: dict[str, NetworkReference],
                 data_histogram: torch.Tensor, device: torch.device, floor_source: FloorSource | None = None,
                 fid_resamples: int = FID_RESAMPLES):
        self.classifier, self.num_classes, self.removed = classifier, num_classes, removed
        self.references, self.data_histogram, self.device = references, data_histogram, device
        self.floor_source, self.fid_resamples = floor_source, fid_resamples
        self._floors: dict[int, dict] = {}
        self._counts: dict[int, np.ndarray] = {}

    @torch.no_grad()
    def labels(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        probs = [self.classifier(M.from_uint8(images[i : i + batch_size]).to(self.device)).float().cpu()
                 for i in range(0, len(images), batch_size)]
        return torch.cat(probs).argmax(dim=1)

    def counts(self, samples: int) -> np.ndarray:
        if samples not in self._counts:
            self._counts[samples] = resample_counts(samples)
        return self._counts[samples]

    def features(self, images: torch.Tensor, known: dict[str, torch.Tensor] | None = None,
                 saved: Callable[[dict[str, torch.Tensor]], None] | None = None) -> dict[str, torch.Tensor]:
        """``features_<net>`` of ``images`` for every network: those of the first images from ``known`` (a grown
        or resumed point's), the rest computed FEATURE_CHUNK images at a time, cut at the same indices however
        often the point was resumed; ``saved`` gets every network's features so far after each chunk."""
        features = dict(known or {})
        for name, ref in self.references.items():
            key = f"features_{name}"
            parts = [features[key]] if key in features else []
            for start in range(sum(map(len, parts)), len(images), FEATURE_CHUNK):
                parts.append(compute_features(ref.network, images[start : start + FEATURE_CHUNK]))
                features[key] = torch.cat(parts)
                if saved is not None:
                    saved(features)
        return features

    def metrics(self, images: torch.Tensor, labels: torch.Tensor,
                known_features: dict[str, torch.Tensor] | None = None,
                saved: Callable[[dict[str, torch.Tensor]], None] | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
        """(the point's metrics, the tensors to save with it: features and resamples per network).
        ``known_features``, ``saved``: as in :meth:`features`."""
        histogram = M.class_histogram(labels, self.num_classes)
        out = {
            "class_histogram": histogram.tolist(),
            "forbidden_share": M.forbidden_share(histogram, self.removed),
            "kl_uniform_kept": M.kl_divergence(M.kept_uniform_target(self.num_classes, self.removed), histogram),
            "kl_data_kept": M.kl_divergence(M.kept_data_target(self.data_histogram, self.removed), histogram),
        }
        features = self.features(images, known_features, saved)
        tensors = {}
        label_array = labels.numpy()
        for name, ref in self.references.items():
            values, resamples = network_quality(name, ref, features[f"features_{name}"], label_array, self.removed,
                                                self.counts(len(images)), self.device, self.fid_resamples)
            out.update(values)
            tensors[f"features_{name}"] = features[f"features_{name}"]
            tensors.update({f"resample_{key}": torch.from_numpy(v) for key, v in resamples.items()})
        if self.references and self.floor_source is not None:
            out["floor"] = self.floor(len(images))
        return out, tensors

    def floor_selections(self, samples: int, ref: NetworkReference) -> tuple[Featurise, Featurise]:
        """The held-out kept-class and all-class selections of the floor at ``samples`` images, for one network."""
        source = self.floor_source
        return kept_and_all_selections(ref.network, source.dataset, self.removed, source.cache_dir, source.data_dir,
                                       source.split, samples)

    def prepare_floors(self, counts, rank: int = 0, world: int = 1, wait=lambda: None) -> None:
        """The floor at each sample count in ``counts``. With ``world`` processes (this one ``rank``), each
        featurises its share of the real images into the cache and, after ``wait``, reads the rest from it."""
        has_floor = bool(self.references) and self.floor_source is not None
        selections = [featurise for samples in counts for ref in self.references.values()
                      for featurise in self.floor_selections(samples, ref)] if has_floor else []
        fill_feature_cache(selections, rank, world, wait)
        if has_floor:
            for samples in counts:
                self.floor(samples)

    def floor(self, samples: int) -> dict:
        """Real vs real at ``samples`` images (fewer when the held-out selection is smaller): every quality metric
        of held-out real images against the same references, and the image count ``n``."""
        if samples not in self._floors:
            values = {}
            for name, ref in self.references.items():
                kept, every = (featurise() for featurise in self.floor_selections(samples, ref))
                kept_values, _ = network_quality(name, ref, kept.features, kept.labels.numpy(), self.removed, None,
                                                 self.device)
                kept_values[f"fid_{name}_all"] = float(FidTerms(every.features, ref.all_stats.mean,
                                                                ref.all_stats.covariance).fid(*normalised_weights(
                                                                    np.ones((1, len(every.features)))))[0])
                values |= kept_values
                values["n"] = len(kept.features)
            self._floors[samples] = values
        return self._floors[samples]
