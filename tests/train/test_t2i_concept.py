"""Section d's statistics on hand-made readings: prompt-cluster weights, the metrics per weight row, and methods
compared at a matched red share with paired differences."""

import numpy as np
import pytest

from train.removal.paired import at_share
from train.t2i.study.concept import KEPT_COLOURS, ImageReadings, cluster_weights, metrics


def _readings(red, colours=None):
    n = len(red)
    colours = np.ones((n, len(KEPT_COLOURS))) if colours is None else colours
    return ImageReadings(np.asarray(red, float), np.ones(n), np.full(n, 0.5), colours, np.ones((n, 5)))


def test_cluster_weights_resample_whole_prompts():
    w = cluster_weights(12, seeds=3, resamples=50, seed=1)
    assert w.shape == (51, 12) and (w[0] == 1).all()
    assert (w[1:].sum(1) == 12).all()  # 4 prompts drawn, 3 images each
    assert (w[1:, 0::3] == w[1:, 1::3]).all() and (w[1:, 1::3] == w[1:, 2::3]).all()  # seeds move together


def test_metrics_of_uniform_kept_colours_have_zero_kl():
    r = _readings([1, 0, 0, 0])
    m = metrics(r, cluster_weights(4, seeds=1, resamples=20))
    assert m["red_share"][0] == pytest.approx(0.25) and m["ssim"][0] == pytest.approx(0.5)
    assert m["kl_colour"][0] == pytest.approx(0.0, abs=1e-12) and m["kl_shape"][0] == pytest.approx(0.0, abs=1e-12)
    skewed = np.zeros((4, len(KEPT_COLOURS)))
    skewed[:, 0] = 1  # every kept object yellow
    assert metrics(_readings([0] * 4, skewed), np.ones((1, 4)))["kl_colour"][0] > 0.3


def test_matched_share_interpolates_each_curve_and_pairs_the_draws():
    # two methods from the same no-negative point (red 0.4): A reaches red 0.1 at SSIM 0.8, B at SSIM 0.6
    red = np.array([[0.4, 0.2, 0.0], [0.4, 0.3, 0.1]])
    value = np.array([[1.0, 0.9, 0.7], [1.0, 0.8, 0.6]])
    at = at_share(red, value, 0.1)
    assert at == pytest.approx([0.8, 0.6])
    assert np.isnan(at_share(red, value, 0.5)).all()  # neither curve starts above 40% red
