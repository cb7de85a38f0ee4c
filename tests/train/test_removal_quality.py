"""Weighted FID / KID of a point's features (point estimate, bootstrap resamples, class balance) against the
plain implementations, and the class-balance weights."""

import numpy as np
import pytest
import torch

from train.removal.fid import FeatureStats, frechet_distance
from train.removal.paired import bootstrap_indices
from train.removal.quality import (
    FidTerms,
    KidTerms,
    balance_units,
    counts_per_index,
    normalised_weights,
    polynomial_kernel,
    reference_kernel_term,
)


def mmd2_unbiased(x, y):
    """The plain unbiased squared MMD (KID of equal-weight samples), written out as the reference."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def _features(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize("n, d", [(40, 8), (12, 30)])  # the feature side and the sample side of the eigenproblem
def test_fid_with_equal_weights_is_the_frechet_distance(n, d):
    x, ref = _features(n, d, 0, 0.3), _features(300, d, 1)
    stats = FeatureStats.from_features(ref)
    terms = FidTerms(x, stats.mean, stats.covariance)
    weights, squares = normalised_weights(np.ones((1, n)))
    expected = frechet_distance(FeatureStats.from_features(x), stats)
    assert terms.fid(weights, squares)[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n, d", [(40, 8), (12, 30)])
def test_fid_of_a_resample_is_the_frechet_distance_of_the_resampled_rows(n, d):
    x, ref = _features(n, d, 2), _features(300, d, 3)
    stats = FeatureStats.from_features(ref)
    indices = bootstrap_indices(n, 3, seed=4)
    weights, squares = normalised_weights(counts_per_index(indices, n))
    ours = FidTerms(x, stats.mean, stats.covariance).fid(weights, squares)
    for r in range(3):
        rows = x[torch.from_numpy(indices[r])]
        assert ours[r] == pytest.approx(frechet_distance(FeatureStats.from_features(rows), stats), rel=1e-6)


def test_kid_with_equal_weights_is_the_unbiased_mmd_against_the_whole_reference():
    x, ref = _features(30, 6, 5, 0.2), _features(50, 6, 6)
    terms = KidTerms(x, ref, reference_kernel_term(ref))
    weights, _ = normalised_weights(np.ones((1, 30)))
    assert terms.kid(weights)[0] == pytest.approx(mmd2_unbiased(x, ref), rel=1e-10, abs=1e-12)


def test_kid_resample_leaves_out_pairs_of_the_same_sample():
    """A resample that draws each of two samples twice: only the cross pair (i, j) counts within the set."""
    x, ref = _features(2, 4, 7), _features(20, 4, 8)
    terms = KidTerms(x, ref, reference_kernel_term(ref))
    weights, _ = normalised_weights(np.array([[2, 2]]))
    k = terms.kernel.numpy()
    cross = terms.cross.numpy()
    expected = k[0, 1] - (cross[0] + cross[1]) + terms.reference_term
    assert terms.kid(weights)[0] == pytest.approx(expected, rel=1e-12)


def test_balance_units_give_each_kept_class_its_reference_share():
    labels = np.array([0, 1, 1, 1, 2])  # class 0 removed; class 1 over-represented
    shares = np.array([0.0, 0.5, 0.5])
    units = balance_units(labels, np.ones((1, 5)), 0, shares)
    weights, squares = normalised_weights(np.ones((1, 5)), units)
    per_class = [weights[0, labels == c].sum() for c in range(3)]
    assert per_class == pytest.approx([0.0, 0.5, 0.5])
    assert squares[0] == pytest.approx(3 * (0.5 / 3) ** 2 + 0.5**2)
    # a resample that misses class 2: its share goes to the classes present
    weights, _ = normalised_weights(np.array([[1, 2, 0, 1, 0]]), balance_units(labels, np.array([[1, 2, 0, 1, 0]]),
                                                                               0, shares))
    assert weights[0, 1:4].sum() == pytest.approx(1.0)


def test_balanced_metrics_do_not_see_the_class_mix_but_the_plain_ones_do():
    """Two classes with different features; the same images in another class mix: the plain KID moves, the
    balanced one does not."""
    a, b = _features(60, 5, 9), _features(60, 5, 10, 1.5)
    ref = torch.cat([_features(100, 5, 11), _features(100, 5, 12, 1.5)])
    ref_labels = np.array([1] * 100 + [2] * 100)
    shares = np.bincount(ref_labels, minlength=3) / 200
    term = reference_kernel_term(ref)
    mixes = {"even": (torch.cat([a[:30], b[:30]]), np.array([1] * 30 + [2] * 30)),
             "skewed": (torch.cat([a[:50], b[:10]]), np.array([1] * 50 + [2] * 10))}
    plain, balanced = {}, {}
    for mix, (x, labels) in mixes.items():
        terms = KidTerms(x, ref, term)
        ones = np.ones((1, 60))
        plain[mix] = terms.kid(normalised_weights(ones)[0])[0]
        balanced[mix] = terms.balanced_kid(ones, labels, 0, shares)[0]
    assert plain["skewed"] > plain["even"] + 0.05
    assert abs(balanced["skewed"] - balanced["even"]) < 0.3 * (plain["skewed"] - plain["even"])


def test_a_resample_without_weight_gives_nan_not_a_number_of_nothing():
    x, ref = _features(4, 3, 13), _features(30, 3, 14)
    stats = FeatureStats.from_features(ref)
    units = balance_units(np.array([0, 0, 0, 0]), np.ones((1, 4)), 0, np.array([0.0, 0.5, 0.5]))
    weights, squares = normalised_weights(np.ones((1, 4)), units)
    assert np.isnan(FidTerms(x, stats.mean, stats.covariance).fid(weights, squares)[0])
    assert np.isnan(KidTerms(x, ref, reference_kernel_term(ref)).kid(weights)[0])
    assert np.isnan(KidTerms(x, ref, reference_kernel_term(ref)).balanced_kid(np.ones((1, 4)), np.zeros(4, int), 0,
                                                                              np.array([0.0, 0.5, 0.5]))[0])


def test_balanced_kid_is_the_stratified_u_statistic():
    """By hand: two classes of two samples each, shares 0.25 / 0.75, one resample drawing sample 0 twice."""
    x, ref = _features(4, 3, 15), _features(25, 3, 16)
    terms = KidTerms(x, ref, reference_kernel_term(ref))
    labels, shares = np.array([1, 1, 2, 2]), np.array([0.0, 0.25, 0.75])
    k, kbar = terms.kernel.numpy(), terms.cross.numpy()
    counts = np.array([[2, 1, 1, 0]])
    t11 = 2 * 2 * k[0, 1] / (3**2 - 5)  # distinct pairs of class 1: (0, 1) drawn 2 x 1 times, both orders
    t22 = np.nan  # class 2 has one distinct sample in this resample: undefined
    assert np.isnan(terms.balanced_kid(counts, labels, 0, shares)[0]) and np.isnan(t22)
    counts = np.array([[2, 1, 1, 1]])
    t22 = 2 * k[2, 3] / (2**2 - 2)
    t12 = (2 * k[0, 2] + 2 * k[0, 3] + k[1, 2] + k[1, 3]) / (3 * 2)
    within = 0.25**2 * t11 + 0.75**2 * t22 + 2 * 0.25 * 0.75 * t12
    cross = 0.25 * (2 * kbar[0] + kbar[1]) / 3 + 0.75 * (kbar[2] + kbar[3]) / 2
    expected = within - 2 * cross + terms.reference_term
    assert terms.balanced_kid(counts, labels, 0, shares)[0] == pytest.approx(expected, rel=1e-12)


def test_counts_per_index_equal_bincounts():
    indices = bootstrap_indices(9, 5, seed=1)
    counts = counts_per_index(indices, 9)
    assert counts.shape == (5, 9) and (counts.sum(1) == 9).all()
    assert np.array_equal(counts[3], np.bincount(indices[3], minlength=9))
