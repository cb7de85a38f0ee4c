"""Image quality of a point from its per-sample features: FID and KID of a *weighted* sample set, so that the same
code gives the point estimate (equal weights), the paired bootstrap resamples (weights = how often each sample
index was drawn; the index draws are shared by every point with the same sample count, see
:mod:`train.removal.paired`) and the class-balanced variants.

Class-balanced ("balanced") metric: sample i, labelled c by the classifier, gets weight r_c / n_c, where r_c is
class c's share in the reference set and n_c the number of samples labelled c (removed-class samples get 0; a
kept class no sample reached drops out and the others are renormalised). The balanced FID/KID therefore compare
the images *given their class* with the reference: what guidance does to the strokes, not how it moves the class
mix (KL and the forbidden share measure that). The same weights are applied inside every bootstrap resample.

FID of weighted features X (N x D, weights w summing to 1) against reference mean mu and covariance S:
``|m - mu|^2 + tr C + tr S - 2 tr (C S)^(1/2)`` with ``m = X^T w`` and ``C = sum_i w_i (x_i - m)(x_i - m)^T /
(1 - sum_rows w^2)`` (the reliability-weighted unbiased covariance; with equal weights it is the usual 1/(N - 1)
one, with bootstrap counts the covariance of the resampled rows). ``tr (C S)^(1/2)`` is the sum of the square
roots of the eigenvalues of ``S^(1/2) C S^(1/2)``; when fewer samples than dimensions carry weight, of the
(smaller) matrix ``W^(1/2) Xc S Xc^T W^(1/2)`` with the same non-zero eigenvalues: a 2048-d Inception FID costs one
symmetric eigen-decomposition instead of scipy's ~20 s ``sqrtm`` (equal to fid.frechet_distance within 1e-6).

KID (Binkowski et al. 2018: the unbiased squared MMD under the cubic kernel k(x, y) = (x.y / d + 1)^3; unlike
FID's, its expectation does not depend on the sample count) of weighted samples against all reference features:
``sum_{i != j} w_i w_j k_ij / (1 - sum w_i^2) - 2 sum_i w_i kbar_i + K_ref``, where ``kbar_i`` is sample i's mean
kernel value with the reference set and ``K_ref`` the reference's own unbiased term. Pairs of the same sample
index are left out (a resample's duplicates would otherwise count as perfectly similar pairs); with equal weights
it is exactly the plain unbiased MMD^2 against the whole reference set. The balanced KID is the stratified
U-statistic ``sum_{c, c'} r_c r_c' T_cc'`` (``T_cc'``: the mean kernel value over pairs from classes c and c',
distinct samples only within a class), unbiased for the mixture with the reference's class shares; a plain
weighted U-statistic is not (it under-weights the pairs within small classes). A class with a single distinct
sample leaves ``T_cc`` undefined: that KID is NaN.
"""

from __future__ import annotations

import numpy as np
import torch

FID_RESAMPLES = 200  # default: an eigen-decomposition per resample, on the first 200 of the shared index draws
KERNEL_CHUNK = 4096


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KID's cubic polynomial kernel between the rows of x and y."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def counts_per_index(indices: np.ndarray, samples: int) -> np.ndarray:
    """``[R, N]`` how often each sample index appears in each resample of ``indices`` ``[R, N]``."""
    offsets = np.arange(indices.shape[0])[:, None] * samples
    return np.bincount((indices + offsets).ravel(), minlength=indices.shape[0] * samples).reshape(-1, samples)


def balance_units(labels: np.ndarray, counts: np.ndarray, removed: int, shares: np.ndarray) -> np.ndarray:
    """``[R, N]`` class-balance weight per sample index and resample: ``shares[c] / n_c`` for a sample labelled
    c (n_c: the class's samples in that resample), 0 for the removed class. ``shares``: the reference's class
    shares (length C, its removed-class entry ignored)."""
    onehot = np.eye(len(shares))[labels]  # [N, C]
    class_counts = counts @ onehot  # [R, C]
    per_sample = class_counts[:, labels]  # [R, N]: n of the sample's class in that resample
    with np.errstate(divide="ignore", invalid="ignore"):
        units = np.where(per_sample > 0, shares[labels][None, :] / per_sample, 0.0)
    units[:, labels == removed] = 0.0
    return units


def normalised_weights(counts: np.ndarray, units: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weights ``[R, N]`` summing to 1 per resample, ``sum over rows of w^2`` ``[R]``) from resample counts and
    optional per-index unit weights: each drawn row of index i weighs ``units[i]``. A resample without weight
    (every drawn sample in the removed class) gets NaN weights: its metrics are NaN, not a number of nothing."""
    counts = counts.astype(np.float64)
    row = np.ones_like(counts) if units is None else units
    mass = counts * row
    total = mass.sum(axis=1, keepdims=True)
    total = np.where(total > 0, total, np.nan)
    weights = mass / total
    row_squares = (counts * row**2).sum(axis=1) / total[:, 0] ** 2
    return weights, row_squares


class FidTerms:
    """What a weighted FID of one point's features against one reference needs, computed once."""

    def __init__(self, features: torch.Tensor, ref_mean: torch.Tensor, ref_cov: torch.Tensor):
        self.x = np.asarray(features, dtype=np.float64)
        self.mu = np.asarray(ref_mean, dtype=np.float64)
        self.cov = np.asarray(ref_cov, dtype=np.float64)
        self.trace_ref = float(np.trace(self.cov))
        self._gram = None  # X S X^T, only for the sample side
        self._root = None  # S^(1/2), only for the feature side

    def _sample_gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = self.x @ self.cov @ self.x.T
        return self._gram

    def _ref_root(self) -> np.ndarray:
        if self._root is None:
            vals, vecs = np.linalg.eigh(self.cov)
            self._root = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T  # symmetric
        return self._root

    def fid(self, weights: np.ndarray, row_squares: np.ndarray) -> np.ndarray:
        """FID per row of ``weights`` ``[R, N]`` (each summing to 1)."""
        weights = np.atleast_2d(weights)
        out = np.empty(len(weights))
        for r, (w, s) in enumerate(zip(weights, np.atleast_1d(row_squares), strict=True)):
            out[r] = self._one(w, float(s))
        return out

    def _one(self, w: np.ndarray, row_squares: float) -> float:
        if not (np.isfinite(w).all() and row_squares < 1):  # no weight, or one sample: no covariance
            return float("nan")
        k = 1.0 / (1.0 - row_squares)
        used = np.flatnonzero(w > 0)
        x, wu = self.x[used], w[used]
        m = wu @ x
        trace_c = k * float(wu @ (x * x).sum(1) - m @ m)
        if len(used) < x.shape[1]:  # the sample side: |used| x |used|
            g = self._sample_gram()[np.ix_(used, used)]
            gw = g @ wu
            centred = g - gw[:, None] - gw[None, :] + wu @ gw
            root_w = np.sqrt(wu)
            eig = np.linalg.eigvalsh(k * root_w[:, None] * centred * root_w[None, :])
        else:  # the feature side: D x D
            xc = x - m
            c = k * (xc.T * wu) @ xc
            root = self._ref_root()
            eig = np.linalg.eigvalsh(root @ c @ root)
        diff = m - self.mu
        return float(diff @ diff + trace_c + self.trace_ref - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def reference_kernel_term(reference: torch.Tensor, device: torch.device | str = "cpu") -> float:
    """The reference set's own unbiased kernel mean ``sum_{j != l} k(y_j, y_l) / (M (M - 1))``, in float64
    chunks (a 54k-image reference does not fit one kernel matrix)."""
    y = reference.to(device, torch.float64)
    m = len(y)
    if m < 2:
        raise ValueError("KID needs at least 2 reference samples")
    total, diagonal = 0.0, 0.0
    for a in range(0, m, KERNEL_CHUNK):
        block = polynomial_kernel(y[a : a + KERNEL_CHUNK], y)
        total += float(block.sum())
        diagonal += float(((y[a : a + KERNEL_CHUNK] ** 2).sum(1) / y.shape[1] + 1).pow(3).sum())
    return (total - diagonal) / (m * (m - 1))


class KidTerms:
    """What a weighted KID of one point's features against one reference needs: the samples' kernel matrix, each
    sample's mean kernel value with the reference, and the reference's own term. Kept as float64 tensors on
    ``device``: the resample products (R x N x N) are the heavy part at 10,240 samples."""

    def __init__(self, features: torch.Tensor, reference: torch.Tensor, reference_term: float,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        x = features.to(self.device, torch.float64)
        y = reference.to(self.device, torch.float64)
        self.kernel = polynomial_kernel(x, x)
        cross = torch.zeros(len(x), dtype=torch.float64, device=self.device)
        for a in range(0, len(y), KERNEL_CHUNK):
            cross += polynomial_kernel(x, y[a : a + KERNEL_CHUNK]).sum(1)
        self.cross = cross / len(y)
        self.reference_term = reference_term

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.atleast_2d(array), dtype=torch.float64, device=self.device)

    def balanced_kid(self, counts: np.ndarray, labels: np.ndarray, removed: int, shares: np.ndarray) -> np.ndarray:
        """Class-balanced KID per row of resample ``counts`` ``[R, N]`` (the stratified U-statistic)."""
        counts = self._tensor(counts)
        classes = [c for c in range(len(shares)) if c != removed and shares[c] > 0 and (labels == c).any()]
        if not classes:
            return np.full(len(counts), np.nan)
        label_tensor = torch.as_tensor(labels, device=self.device)
        per = [counts * (label_tensor == c) for c in classes]  # [R, N] each: the class's draws
        sizes = torch.stack([m.sum(1) for m in per], 1)  # [R, C']
        r = torch.where(sizes > 0, torch.as_tensor(shares[classes], dtype=torch.float64, device=self.device), 0.0)
        r = r / r.sum(1, keepdim=True)
        diagonal = self.kernel.diagonal()
        within = torch.zeros(len(counts), dtype=torch.float64, device=self.device)
        cross = torch.zeros_like(within)
        for a, ma in enumerate(per):
            projected = ma @ self.kernel
            for b, mb in enumerate(per):
                total = (projected * mb).sum(1)
                if a == b:
                    pairs = (total - (ma**2 * diagonal).sum(1)) / (sizes[:, a] ** 2 - (ma**2).sum(1))
                else:
                    pairs = total / (sizes[:, a] * sizes[:, b])
                weight = r[:, a] * r[:, b]
                within += torch.where(weight > 0, weight * pairs, 0.0)
            cross += torch.where(r[:, a] > 0, r[:, a] * (ma @ self.cross) / sizes[:, a], 0.0)
        return (within - 2 * cross + self.reference_term).cpu().numpy()

    def kid(self, weights: np.ndarray) -> np.ndarray:
        """KID per row of ``weights`` ``[R, N]`` (each summing to 1), same-index pairs left out."""
        w = self._tensor(weights)
        quadratic = ((w @ self.kernel) * w).sum(1)
        self_pairs = (w**2 * self.kernel.diagonal()).sum(1)
        within = (quadratic - self_pairs) / (1.0 - (w**2).sum(1))
        return (within - 2 * w @ self.cross + self.reference_term).cpu().numpy()
