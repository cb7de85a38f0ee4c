"""Paired bootstrap statistics of the class-removal sweep: resampled histograms, KL, interpolation at a matched
forbidden share, intervals."""

import numpy as np
import torch

from train.removal.metrics import class_histogram, kept_uniform_target, kl_divergence
from train.removal.paired import Interval, at_share, bootstrap_indices, kl_from_counts, resample_counts, shares_and_kls


def test_resampled_counts_equal_a_loop_over_resamples():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=300)
    idx = bootstrap_indices(300, resamples=50, seed=3)
    counts = resample_counts(labels, 10, idx)
    for r in (0, 17, 49):
        assert np.array_equal(counts[r], np.bincount(labels[idx[r]], minlength=10))


def test_kl_matches_the_sweeps_kl_including_its_pseudo_count():
    target = kept_uniform_target(10, 0).numpy()
    for counts in ([0, 30, 30, 30, 30, 30, 30, 30, 30, 30], [5, 0, 40, 20, 30, 30, 30, 30, 30, 30]):
        expected = kl_divergence(torch.tensor(target), torch.tensor(counts))
        assert abs(kl_from_counts(target, np.array(counts)) - expected) < 1e-12


def test_point_estimate_and_resamples_of_one_point():
    labels = np.array([0] * 10 + list(range(1, 10)) * 10)
    target = kept_uniform_target(10, 0).numpy()
    share, kl = shares_and_kls(labels, 0, target, None)
    assert share == 0.1
    assert abs(kl - kl_divergence(torch.tensor(target), class_histogram(torch.tensor(labels), 10))) < 1e-12
    shares, kls = shares_and_kls(labels, 0, target, bootstrap_indices(len(labels), 400, seed=0))
    assert shares.shape == (400,) and abs(shares.mean() - 0.1) < 0.01 and (kls >= 0).all()


def test_interpolation_at_a_matched_share():
    shares = np.array([0.10, 0.04, 0.01, 0.0])  # increasing scale removes more
    values = np.array([0.10, 0.20, 0.50, 1.0])
    assert at_share(shares, values, 0.02) == 0.2 + (0.02 - 0.04) / (0.01 - 0.04) * (0.5 - 0.2)
    assert at_share(shares, values, 0.04) == 0.2
    assert np.isnan(at_share(shares, values, 0.2))  # never that high: no operating point
    batch = at_share(np.stack([shares, shares / 2]), np.stack([values, values]), 0.02)
    assert batch.shape == (2,) and batch[1] == 0.2  # the second curve passes 0.02 at its second point


def test_paired_differences_are_tighter_than_unpaired_ones():
    """Two methods that differ by a few samples on the same noise: the paired interval of the difference
    excludes zero, an interval from independent resamples of each does not."""
    rng = np.random.default_rng(0)
    n = 2000
    base = rng.integers(1, 10, size=n)
    a = np.where(rng.random(n) < 0.02, 0, base)  # method A leaves 2% forbidden
    b = np.where((a == 0) & (rng.random(n) < 0.5), base, a)  # B removes half of them, same noise otherwise
    target = kept_uniform_target(10, 0).numpy()
    idx = bootstrap_indices(n, 1000, seed=1)
    (sa, _), (sb, _) = shares_and_kls(a, 0, target, idx), shares_and_kls(b, 0, target, idx)
    paired = Interval.of(float((a == 0).mean() - (b == 0).mean()), sa - sb)
    other = bootstrap_indices(n, 1000, seed=2)
    unpaired = Interval.of(paired.value, sa - shares_and_kls(b, 0, target, other)[0])
    assert paired.excludes_zero and paired.high - paired.low < 0.8 * (unpaired.high - unpaired.low)


def test_an_interval_without_enough_draws_is_not_reported():
    draws = np.array([0.1] * 50 + [np.nan] * 50)
    interval = Interval.of(0.1, draws)
    assert np.isnan(interval.low) and interval.resamples == 50 and not interval.excludes_zero
    from train.removal.summary import _with_interval

    assert _with_interval("kl_uniform_kept", interval) == "0.1000 (no interval: 50 of 100 resamples define it)"


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift():
    from train.removal.quality import KidTerms, normalised_weights, polynomial_kernel, reference_kernel_term

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 16, generator=g).double(), torch.randn(400, 16, generator=g).double()
    ones, _ = normalised_weights(np.ones((1, 400)))
    same = KidTerms(x, y, reference_kernel_term(y)).kid(ones)[0]
    shifted = KidTerms(x + 0.5, y, reference_kernel_term(y)).kid(ones)[0]
    assert abs(same) < 0.02 and shifted > 10 * abs(same)  # unbiased: near 0 for one distribution
    a, b = x[:5], y[:6]
    k = polynomial_kernel
    brute = (sum(k(a[i:i + 1], a[j:j + 1]).item() for i in range(5) for j in range(5) if i != j) / 20
             + sum(k(b[i:i + 1], b[j:j + 1]).item() for i in range(6) for j in range(6) if i != j) / 30
             - 2 * k(a, b).mean().item())
    five, _ = normalised_weights(np.ones((1, 5)))
    assert abs(KidTerms(a, b, reference_kernel_term(b)).kid(five)[0] - brute) < 1e-9


def test_fid_resamples_are_biased_and_their_centred_interval_holds_the_estimate():
    """A resample repeats images, which FID reads as a smaller sample: its draws sit above the estimate by about
    the small-sample bias, so the report centres them on the estimate and keeps their spread."""
    from train.removal.analysis import centred_fid_draws
    from train.removal.quality import FidTerms, counts_per_index, normalised_weights

    g = torch.Generator().manual_seed(0)
    samples, dims = 300, 32
    features = torch.randn(samples, dims, generator=g).double() + 0.3
    reference = torch.randn(4000, dims, generator=g).double()
    terms = FidTerms(features, reference.mean(0), torch.cov(reference.T))
    estimate = float(terms.fid(*normalised_weights(np.ones((1, samples))))[0])
    draws = terms.fid(*normalised_weights(counts_per_index(bootstrap_indices(samples, 200), samples)))
    raw = Interval.of(estimate, draws)
    assert raw.low > estimate  # the plain percentile interval misses its own estimate
    centred = centred_fid_draws(estimate, draws)
    interval = Interval.of(estimate, centred)
    assert interval.low < estimate < interval.high
    assert np.isclose(np.median(centred), estimate) and np.isclose(centred.std(), draws.std())
