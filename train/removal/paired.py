"""Paired statistics of a class-removal sweep.

Every point of a sweep samples from common random numbers (train/removal/noise.py): sample i of every method and
scale starts from the same noise and sees the same per-step noise. A bootstrap that resamples sample *indices*
(the same indices for every point in one draw) therefore keeps the pairing, and the spread of a difference
between two methods is that of the methods, not of two independent noise draws.

* :func:`resample_counts` - class histograms of every point under R shared index resamples (vectorised);
* :func:`shares_and_kls` - forbidden share and KL(target || generated) per point and resample;
* :func:`at_share` - a method's value interpolated along its curve (points ordered by scale) at a target
  forbidden share: methods compared at a matched operating point, never at the luckiest point;
* :class:`Interval` - a point estimate with its percentile interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.removal.metrics import KL_FLOOR_PSEUDO_COUNT

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    resamples: int  # draws that gave a value (an operating point a resample's curve does not reach gives none)
    drawn: int = 0  # draws in all; no interval when fewer than 90% of them gave a value

    @classmethod
    def of(cls, value: float, draws: np.ndarray, level: float = LEVEL) -> Interval:
        finite = draws[np.isfinite(draws)]
        if not np.isfinite(value) or len(finite) < 0.9 * len(draws):
            return cls(float(value), float("nan"), float("nan"), len(finite), len(draws))
        alpha = (1 - level) / 2
        low, high = np.quantile(finite, [alpha, 1 - alpha])
        return cls(float(value), float(low), float(high), len(finite), len(draws))

    @property
    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and (self.low > 0 or self.high < 0))

    def as_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.low, self.high], "resamples": self.resamples}


def bootstrap_indices(samples: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[resamples, samples]`` sample indices drawn with replacement (row 0 is not the identity: the point
    estimate is computed separately)."""
    return np.random.default_rng(seed).integers(0, samples, size=(resamples, samples))


def resample_counts(labels: np.ndarray, num_classes: int, indices: np.ndarray) -> np.ndarray:
    """``[R, C]`` class counts of ``labels[indices[r]]`` for every resample r."""
    picked = labels[indices]  # [R, N]
    offsets = np.arange(indices.shape[0])[:, None] * num_classes
    flat = np.bincount((picked + offsets).ravel(), minlength=indices.shape[0] * num_classes)
    return flat.reshape(indices.shape[0], num_classes)


def kl_from_counts(target: np.ndarray, counts: np.ndarray, floor: float = KL_FLOOR_PSEUDO_COUNT) -> np.ndarray:
    """KL(target || counts' shares) along the last axis, with metrics.kl_divergence's pseudo-count rule."""
    counts = counts.astype(np.float64)
    expected = target > 0
    floored = np.where(expected & (counts == 0), floor, counts)
    q = floored / floored.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected, target * np.log(np.where(expected, target / q, 1.0)), 0.0)
    return terms.sum(axis=-1)


def shares_and_kls(labels: np.ndarray, removed: int, target: np.ndarray, indices: np.ndarray | None):
    """(forbidden share, KL) of one point: floats for ``indices`` None, else arrays over the resamples."""
    num_classes = len(target)
    if indices is None:
        counts = np.bincount(labels, minlength=num_classes)[None]
    else:
        counts = resample_counts(labels, num_classes, indices)
    share = counts[:, removed] / counts.sum(axis=1)
    kl = kl_from_counts(target, counts)
    return (float(share[0]), float(kl[0])) if indices is None else (share, kl)


def at_share(shares: np.ndarray, values: np.ndarray, target: float) -> np.ndarray:
    """Values interpolated at forbidden share ``target`` along curves whose points are ordered by scale.

    ``shares``, ``values``: ``[..., P]`` (P points of one method, increasing scale). The curve is walked from the
    weakest point; the first segment that brackets ``target`` gives a linear interpolation in share. NaN where
    the curve never reaches ``target`` (a method that cannot remove that much, or that starts below it)."""
    shares, values = np.asarray(shares, dtype=np.float64), np.asarray(values, dtype=np.float64)
    out = np.full(shares.shape[:-1], np.nan)
    pending = np.ones(shares.shape[:-1], dtype=bool)
    for k in range(shares.shape[-1] - 1):
        a, b = shares[..., k], shares[..., k + 1]
        bracket = pending & (np.minimum(a, b) <= target) & (target <= np.maximum(a, b))
        span = np.where(b != a, b - a, 1.0)
        weight = np.where(b != a, (target - a) / span, 0.0)
        interpolated = values[..., k] + weight * (values[..., k + 1] - values[..., k])
        out = np.where(bracket, interpolated, out)
        pending &= ~bracket
    return out
