"""DNG's per-sample records of a point: stacking batches, the lambda(k) table the ablation follows, the posterior at
the last informative step, the curve samples (both kinds), the per-label summary."""

import numpy as np
import pytest

from train.removal.records import (
    PosteriorRecords,
    curve_indices,
    curves,
    label_summary,
    lambda_table,
    last_posterior,
    schedule_lambdas,
)


def _batch(steps, p_rows):
    return [{"step": k, "sigma": 10.0 - k, "p": row, "lambda": [2 * v / (1 - v) for v in row]}
            for k, row in zip(steps, p_rows, strict=True)]


def test_batches_stack_sample_by_sample():
    records = PosteriorRecords.from_batches([_batch([0, 1], [[0.2, 0.3], [0.4, 0.5]]),
                                             _batch([0, 1], [[0.1], [0.6]])])
    assert records.step == [0, 1] and records.sigma == [10.0, 9.0]
    assert records.p.tolist() == [[0.2, 0.3, 0.1], [0.4, 0.5, 0.6]]
    assert last_posterior(records).tolist() == [0.4, 0.5, 0.6]
    with pytest.raises(ValueError, match="different steps"):
        PosteriorRecords.from_batches([_batch([0, 1], [[0.2], [0.4]]), _batch([0, 2], [[0.2], [0.4]])])


def test_lambda_table_is_the_mean_over_all_samples_and_fills_unrecorded_steps():
    records = PosteriorRecords.from_batches([_batch([0, 2], [[0.2, 0.5], [0.5, 0.75]])])
    table = lambda_table(records)
    assert table["mean_lambda"] == pytest.approx([(0.5 + 2.0) / 2, (2.0 + 6.0) / 2])
    assert table["mean_p"] == pytest.approx([0.35, 0.625])
    # step 1 has no record: DNG kept step 0's lambda there; before the first record: the prior's lambda
    assert schedule_lambdas(table, 4, initial=9.0) == pytest.approx([1.25, 1.25, 4.0, 4.0])
    assert schedule_lambdas({"step": [1], "mean_lambda": [3.0]}, 3, initial=0.5) == [0.5, 3.0, 3.0]


@pytest.mark.parametrize("labels, count, expected", [
    ([3, 0, 5, 0, 0, 7, 8, 0], 4, [0, 1, 2, 3]),  # two of each kind, the first ones
    ([3, 4, 5, 0, 6, 7, 8, 9], 4, [0, 1, 2, 3]),  # one removed-class sample: topped up with kept ones
    ([0, 0, 0, 0, 0, 2], 4, [0, 1, 2, 5]),  # one kept sample: topped up with removed-class ones
    ([1, 2], 4, [0, 1]),
])
def test_curve_samples_include_both_kinds_when_both_exist(labels, count, expected):
    chosen = curve_indices(np.array(labels), 0, count)
    assert chosen == expected
    assert {labels[i] == 0 for i in chosen} == {label == 0 for label in labels}  # both kinds where both exist


def test_curves_and_summary_by_final_label():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [0.6, 0.1, 0.3, 0.2], [0.7, 0.05, 0.4, 0.1]])
    records = PosteriorRecords([0, 1, 2], [3.0, 2.0, 1.0], p, p / (1 - p))
    labels = np.array([0, 4, 0, 6])
    shown = curves(records, labels, 0, 2)
    assert shown["indices"] == [0, 1] and shown["labels"] == [0, 4]
    assert shown["p"] == p[:, [0, 1]].tolist()
    summary = label_summary(records, labels, 0)
    assert summary["removed"]["samples"] == 2 and summary["kept"]["samples"] == 2
    assert summary["removed"]["last_mean_p"] == pytest.approx(0.55)
    assert summary["removed"]["mean_max_p"] == pytest.approx(0.55)
    assert summary["removed"]["share_above_half"] == 0.5 and summary["kept"]["share_above_half"] == 0.0
    assert np.array(summary["kept"]["quantile_p"]).shape == (3, 3)
    assert label_summary(records, np.array([1, 2, 3, 4]), 0)["removed"] == {"samples": 0}
