"""3b / 3d on exact Gaussian mixtures, and the main job end to end."""

import json

import pytest

from negguide.configs import PosteriorConfig
from negguide.toy import experiments as E
from negguide.toy import tables
from negguide.toy.__main__ import main
from negguide.toy.mixture import three_modes_1d, three_modes_2d
from negguide.toy.study import tracker_table


@pytest.mark.slow
def test_dng_exact_removes_the_mode_and_matches_the_target_100k():
    """3b: 100k samples, DDPM 200 steps. Measured: 0.00% forbidden, W1 0.004 (sampling noise level)."""
    mix = three_modes_1d()
    x, _ = E.guided_samples(mix, "dng_exact", 1.0, 100_000, seed=0, steps=200)
    m = E.removal_metrics(mix, x)
    assert m["forbidden_mass"] <= 0.005
    assert m["w1_to_target"] < 0.03


def test_negative_prompting_keeps_forbidden_mass_or_distorts_at_every_scale():
    """3b, the paper's Fig. 1c measured: no constant scale both removes the mode and keeps the others."""
    mix = three_modes_1d()
    dng = E.removal_metrics(mix, E.guided_samples(mix, "dng_exact", 1.0, 3000, seed=1, steps=200)[0])
    for scale in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        m = E.removal_metrics(mix, E.guided_samples(mix, "np", scale, 3000, seed=1, steps=200)[0])
        assert m["forbidden_mass"] > 0.005 or m["distortion"] > 5 * max(dng["distortion"], 0.02), (scale, m)


def test_class_removal_2d_dng_tracked_beats_np_and_sld():
    """3d: the best setting of each method on the 2-D three-mode mixture (App. A)."""
    mix = three_modes_2d()
    cfg = PosteriorConfig(prior=mix.prior_forbidden, temperature=1.0, offset=0.0, p_max=0.99)
    best = {}
    for method, scales in (("np", (0.5, 2.0, 8.0)), ("sld", (1.0, 5.0, 20.0)), ("dng_tracked", (1.0, 2.0))):
        rows = [E.removal_metrics(mix, E.guided_samples(mix, method, s, 1500, seed=2, steps=100,
                                                        dng_config=cfg)[0]) for s in scales]
        best[method] = min(rows, key=lambda r: r["w1_to_target"])
    assert best["dng_tracked"]["forbidden_mass"] < 0.02
    assert best["dng_tracked"]["w1_to_target"] < best["np"]["w1_to_target"]
    assert best["dng_tracked"]["w1_to_target"] < best["sld"]["w1_to_target"]


@pytest.mark.slow
def test_main_job_writes_summary_and_plots(tmp_path):
    assert main(["--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for name in ("np", "sld", "dng_exact", "dng_tracked"):
        assert 0 <= summary["methods"][name]["forbidden_mass"] <= 1
        assert summary["methods"][name]["w1_to_target"] >= 0
    assert summary["methods"]["dng_exact"]["forbidden_mass"] <= 0.005
    for sampler in ("ddpm", "ddim", "euler", "euler_a", "dpmpp_2m"):
        for _steps, row in summary["posterior_tracking"][sampler].items():
            assert 0 <= row["mean_abs_error_final"] <= 1
    assert summary["posterior_tracking"]["ddpm"]["1000"]["mean_abs_error_final"] <= 0.05
    table = tables.per_tracker(summary)
    assert all(tables.NAMES[r["tracker"]] in table for r in summary["high_dimensional_tracking_by_tracker"])
    for png in ("histograms.png", "posterior_tracking.png", "lambda.png", "high_dimensional_tracking.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_tracking_tables_summarise_the_rows():
    rows = [{"mixture": "isotropic", "dim": 64, "sampler": "ddim", "steps": 20, "seed": seed,
             "tracker": "flow-gated-1+evidence+deflated", "mean_abs_error_final": err, "mean_abs_error_time": err / 2,
             "average_probe_rows": probes, "forbidden_found": 1.0, "false_alarms": alarms}
            for seed, err, probes, alarms in ((1, 0.01, 0.5, 0.0), (2, 0.05, 0.7, 0.02))]
    summary = {"high_dimensional_tracking": rows, "high_dimensional_tracking_by_tracker": tracker_table(rows)}
    assert ("| **gated**, deflated probes (auto) | 0.60 | 0.0300 | 0.0500 | 1/2 | 100% | 1.0% / 2.0% |"
            in tables.per_tracker(summary))
    assert "| isotropic | 64 | ddim | 20 | 0.030 (0.050), 0.60 rows |" in tables.per_configuration(
        summary, trackers=("flow-gated-1+evidence+deflated",))
