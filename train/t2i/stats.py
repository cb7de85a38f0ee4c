"""Rates with cluster-bootstrap confidence intervals.

A rate is sum(numerators) / sum(denominators) over images. Images of the same prompt are not independent, so
the interval resamples prompts (clusters) with replacement and recomputes the ratio: the percentile interval
of `resamples` draws, seeded, so a report is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    numerator: int
    denominator: int
    clusters: int

    def as_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.low, self.high], "numerator": self.numerator,
                "denominator": self.denominator, "clusters": self.clusters}

    def text(self, percent: bool = True) -> str:
        if self.denominator == 0:
            return "n/a"
        f = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.3f}")
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}] (n={self.denominator})"


def cluster_bootstrap(numerators, denominators, clusters, resamples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> Rate:
    """The ratio of sums and its cluster-bootstrap percentile interval."""
    num, den = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    k = len(ids)
    num_c, den_c = np.bincount(inverse, num, k), np.bincount(inverse, den, k)
    total_num, total_den = num_c.sum(), den_c.sum()
    if total_den == 0:
        return Rate(float("nan"), float("nan"), float("nan"), 0, 0, k)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(resamples, k))
    dens = den_c[draws].sum(1)
    ratios = np.where(dens > 0, num_c[draws].sum(1) / np.maximum(dens, 1), np.nan)
    alpha = (1 - level) / 2
    low, high = np.nanquantile(ratios, [alpha, 1 - alpha])
    return Rate(float(total_num / total_den), float(low), float(high), int(total_num), int(total_den), k)
