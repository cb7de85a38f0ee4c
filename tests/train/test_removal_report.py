"""The class-removal report on a constructed sweep whose outcome is known: per-point intervals, the model-quality
check, the matched-share table, verdicts that follow the intervals, the files; and the grid's matching rule."""

import csv
import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from train.removal.analysis import Line, method_lines
from train.removal.figures import MAX_PNG_BYTES, _mosaic
from train.removal.metrics import kept_uniform_target, kl_divergence
from train.removal.paired import RESAMPLES, at_share, bootstrap_indices
from train.removal.presets import MNIST_CPU
from train.removal.quality import FID_RESAMPLES, counts_per_index
from train.removal.records import PosteriorRecords, curves, label_summary, lambda_table
from train.removal.report import curve_pick, grid_picks, write_report

REMOVED = 0
DECISIVE, SMALL = 400, 100
KEYS = ("fid_inception_kept", "kid_inception_kept", "fid_inception_balanced", "kid_inception_balanced")
RNG = np.random.default_rng(0)
BASE = RNG.integers(0, 10, DECISIVE)  # sample i's class without guidance: the common noise
REMOVE_DRAW, DAMAGE_DRAW = RNG.random(DECISIVE), RNG.random(DECISIVE)
QUALITY = RNG.normal(1.0, 0.3, DECISIVE)  # a per-sample quality score behind every quality metric

# method -> [(scale, removal r, damage d, samples)]: a sample of class 0 leaves it when its draw < r (NP sends it
# to class 1, the others to a kept class of its own), a kept sample is damaged into class 1 when its draw < d
LINES = {
    ("np", None): [(0.25, 0.3, 0.0), (0.5, 0.6, 0.02), (1.0, 0.85, 0.05), (2.0, 1.0, 0.1)],
    ("sld", None): [(0.5, 0.3, 0.01), (1.0, 0.7, 0.03), (2.0, 0.9, 0.06), (5.0, 1.0, 0.1)],
    ("dng", 0.8): [(0.5, 0.3, 0.0), (1.0, 0.65, 0.0), (2.0, 0.9, 0.0), (5.0, 1.0, 0.0)],
    ("np-schedule", 0.8): [(0.5, 0.3, 0.0), (1.0, 0.65, 0.0), (2.0, 0.9, 0.0), (5.0, 1.0, 0.0)],  # = DNG
}
SMALL_LINES = {("dng", 0.99): [(1.0, 0.6, 0.0), (5.0, 1.0, 0.0)]}
# per metric, what the oracle adds to the unguided model's per-sample score: KID sees it is better, the kept FID
# sees it as worse, the balanced FID cannot tell
ORACLE_OFFSET = {"kid_inception_kept": -0.2, "fid_inception_kept": 0.2, "fid_inception_balanced": 0.0,
                 "kid_inception_balanced": -0.2}


def _labels(method, removal, damage, samples):
    labels = BASE.copy()
    leaving = (BASE == REMOVED) & (REMOVE_DRAW < removal)
    labels[leaving] = 1 if method == "np" else 1 + np.arange(DECISIVE)[leaving] % 9
    labels[(BASE != REMOVED) & (DAMAGE_DRAW < damage)] = 1
    return labels[:samples]


def _quality(key, method, scale, samples):
    offset = ORACLE_OFFSET[key] if method == "oracle" else 0.05 * scale
    # the same noise for every method (a seed from hash() would change with PYTHONHASHSEED, and with it the
    # verdict): the oracle and the unguided model then tie exactly on the balanced FID
    noise = np.random.default_rng(KEYS.index(key)).normal(0, 1e-3, DECISIVE)
    score = (QUALITY + offset + (noise if key == "fid_inception_balanced" else 0.0))[:samples]
    counts = counts_per_index(bootstrap_indices(samples, RESAMPLES, seed=0), samples)
    resamples = counts @ score / samples
    return float(score.mean()), resamples[:FID_RESAMPLES] if key.startswith("fid") else resamples


def _records(labels, scale, p_max):
    steps = 6
    rng = np.random.default_rng(int(scale * 10))
    rising = 0.1 * np.arange(steps)[:, None] * (labels == REMOVED)  # p climbs only on samples ending in class 0
    p = np.clip(0.25 + rising + rng.normal(0, 0.02, (steps, len(labels))), 1e-3, p_max)
    return PosteriorRecords(list(range(steps)), [10.0 / (k + 1) for k in range(steps)], p, scale * p / (1 - p))


def _point(root, sampler, method, scale, p_max, labels, floor_n):
    name = f"{sampler}50-{method}-{scale:g}" + (f"-pmax{p_max:g}" if p_max is not None else "")
    histogram = np.bincount(labels, minlength=10)
    row = {"name": name, "method": method, "scale": scale, "sampler": sampler, "steps": 50, "p_max": p_max,
           "samples": len(labels), "class_histogram": histogram.tolist(),
           "forbidden_share": float(histogram[REMOVED] / len(labels)),
           "kl_uniform_kept": kl_divergence(kept_uniform_target(10, REMOVED), torch.tensor(histogram)),
           "floor": {"n": floor_n, **{k: 0.9 for k in KEYS}}, "samples_per_second": 1.0, "mean_final_posterior": None,
           "curves": None}
    tensors = {"labels": torch.from_numpy(labels),
               "images": torch.from_numpy(np.repeat(labels.astype(np.uint8)[:, None, None, None] * 25, 8, 2).repeat(
                   8, 3))}
    for key in KEYS:
        row[key], resamples = _quality(key, method, scale, len(labels))
        tensors[f"resample_{key}"] = torch.from_numpy(resamples)
    if method == "dng":
        records = _records(labels, scale, p_max)
        row |= {"lambda_schedule": lambda_table(records), "curves": curves(records, labels, REMOVED, 8),
                "posterior_by_label": label_summary(records, labels, REMOVED),
                "mean_final_posterior": float(records.p[-1].mean())}
    (root / "points").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(root / "points" / f"{name}.safetensors"))
    return row


def _study(root, samplers=("ddpm", "ddim")):
    rows = []
    for sampler in samplers:
        rows.append(_point(root, sampler, "none", 0.0, None, _labels("none", 0.0, 0.0, DECISIVE), DECISIVE))
        rows.append(_point(root, sampler, "oracle", 0.0, None, _labels("oracle", 0.97, 0.0, DECISIVE), DECISIVE))
        for lines, samples in ((LINES, DECISIVE), (SMALL_LINES, SMALL)):
            for (method, p_max), points in lines.items():
                rows += [_point(root, sampler, method, scale, p_max, _labels(method, r, d, samples), samples)
                         for scale, r, d in points]
    preset = dataclasses.replace(MNIST_CPU, removed=REMOVED, samplers=samplers)
    return rows, preset


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rows, preset = _study(root)
    return rows, root / "report", write_report(rows, preset, root, root / "report")


def test_files_and_their_size(report):
    _, folder, summary = report
    for name in ("tradeoff.png", "grids_ddpm.png", "grids_ddim.png", "posterior_curves.png"):
        assert 0 < (folder / name).stat().st_size < MAX_PNG_BYTES, name
    text = (folder / "summary.md").read_text()
    assert text.index("Model-quality check") < text.index("Matched forbidden share") < text.index("All points")
    assert "a fixed pseudo-random subset of 5,000 training images" in text
    assert summary["metrics"] == ["kl_uniform_kept", *KEYS]


def test_quality_check_outcomes_follow_the_paired_intervals(report):
    outcomes = {c["metric"]: c["outcome"] for c in report[2]["samplers"]["ddpm"]["quality_check"]}
    assert outcomes == {"kid_inception_kept": "ranks", "fid_inception_kept": "ranks the wrong way",
                        "fid_inception_balanced": "unable to rank", "kid_inception_balanced": "ranks"}
    assert "Cannot rank (no verdicts from them): FID Inception (kept classes), FID Inception (balanced)" in (
        report[1] / "summary.md").read_text()


def test_matched_targets_are_those_every_decisive_line_brackets(report):
    rows, _, summary = report
    matched = summary["samplers"]["ddpm"]["matched"]
    assert matched["samples"] == DECISIVE
    decisive = [r for r in rows if r["sampler"] == "ddpm" and r["samples"] == DECISIVE]
    lines = method_lines(decisive)
    expected = [t for t in (0.01, 0.02, 0.05) if all(
        np.isfinite(at_share(np.array([r["forbidden_share"] for r in pts]), np.zeros(len(pts)), t))
        for pts in lines.values())]
    assert matched["targets"] == expected and 0.02 in expected
    assert "DNG (p_max 0.99)" not in matched["lines"]  # its points have fewer samples than the decisive ones
    assert matched["lines"] == ["NP", "SLD", "DNG (p_max 0.8)", "NP lambda(t) of DNG (p_max 0.8)"]


def test_matched_values_are_the_interpolation_along_each_curve(report):
    rows, folder, _ = report
    np_rows = sorted((r for r in rows if r["sampler"] == "ddpm" and r["method"] == "np"), key=lambda r: r["scale"])
    expected = at_share(np.array([r["forbidden_share"] for r in np_rows]),
                        np.array([r["kl_uniform_kept"] for r in np_rows]), 0.02)
    with open(folder / "matched.csv") as f:
        found = [r for r in csv.DictReader(f) if r["sampler"] == "ddpm" and r["line"] == "NP"
                 and r["metric"] == "kl_uniform_kept" and float(r["target_share"]) == 0.02]
    assert len(found) == 1 and float(found[0]["value"]) == pytest.approx(float(expected), rel=1e-12)
    assert float(found[0]["low"]) < float(found[0]["value"]) < float(found[0]["high"])


def _comparisons(folder):
    with open(folder / "comparisons.csv") as f:
        return [r for r in csv.DictReader(f) if r["sampler"] == "ddpm"]


def test_verdicts_follow_the_intervals(report):
    _, folder, summary = report
    found = _comparisons(folder)
    assert found
    kl = {(r["second"], float(r["target_share"])): r for r in found if r["metric"] == "kl_uniform_kept"}
    # NP sends every removed sample to class 1: DNG's KL is lower, and the paired interval shows it
    assert kl[("NP", 0.02)]["verdict"].startswith("supported: DNG (p_max 0.8) lower")
    assert float(kl[("NP", 0.02)]["high"]) < 0
    # the ablation has DNG's labels exactly: difference 0, nothing shown
    same = kl[("NP lambda(t) of DNG (p_max 0.8)", 0.02)]
    assert float(same["difference"]) == 0 and same["verdict"].startswith("not shown")
    for r in found:
        if r["metric"] in ("fid_inception_kept", "fid_inception_balanced"):  # failed the quality check
            assert r["verdict"].startswith("no verdict")
        elif r["low"] != "" and np.isfinite(float(r["low"])):
            excludes = float(r["low"]) > 0 or float(r["high"]) < 0
            assert r["verdict"].startswith("supported") == excludes
    text = (folder / "summary.md").read_text()
    for sentence in summary["samplers"]["ddpm"]["verdicts"]:
        assert sentence in text
    # the table at a glance says the same: DNG lower than NP on KL at 2%, no verdict from FID, n.s. for the ablation
    glance = text[text.index("Verdicts at a glance"):text.index("Verdicts (paired")]
    row = next(line for line in glance.splitlines() if line.startswith("| 2% | DNG (p_max 0.8) - NP |"))
    assert row.split(" | ")[2] == "**lower**" and row.split(" | ")[KEYS.index("fid_inception_kept") + 3] == "-"
    ablation = next(line for line in glance.splitlines() if line.startswith("| 2% | DNG (p_max 0.8) - NP lambda(t)"))
    assert ablation.split(" | ")[2] == "n.s."


def test_intervals_table_has_every_point_and_its_floor(report):
    rows, folder, _ = report
    with open(folder / "intervals.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == [r["name"] for r in rows]
    for row in table:
        assert float(row["share_low"]) <= float(row["forbidden_share"]) <= float(row["share_high"])
        assert float(row["kid_inception_kept_floor"]) == 0.9


def test_only_one_sampler_and_no_quality_metrics(tmp_path):
    rows, preset = _study(tmp_path, samplers=("ddpm",))
    rows = [{k: v for k, v in r.items() if k not in KEYS and k != "floor"} for r in rows]
    summary = write_report(rows, preset, tmp_path, tmp_path / "report")
    assert list(summary["samplers"]) == ["ddpm"] and summary["metrics"] == ["kl_uniform_kept"]
    assert not (tmp_path / "report" / "grids_ddim.png").exists()
    assert "DDIM" not in (tmp_path / "report" / "summary.md").read_text()
    assert summary["samplers"]["ddpm"]["quality_check"] == []


# ------------------------------------------------------------------------------------------ grids
def _pt(method, scale, share, p_max=None):
    return {"name": f"{method}-{scale:g}", "method": method, "scale": scale, "forbidden_share": share,
            "p_max": p_max}


def test_grid_target_is_at_least_one_percent_and_ties_take_the_lower_share():
    lines = method_lines([_pt("np", 1.0, 0.05), _pt("np", 2.0, 0.0), _pt("np", 3.0, 0.02),
                          _pt("dng", 1.0, 0.03, 0.99), _pt("dng", 5.0, 0.0, 0.99)])
    target, picks = grid_picks(lines)
    assert target == 0.01  # both lines reach 0%: the floor
    assert picks[Line("np")]["scale"] == 2.0  # 0% and 2% are both 1% away: the lower share
    assert picks[Line("dng", 0.99)]["scale"] == 5.0


def test_grid_picks_closest_point_per_line():
    lines = method_lines([_pt("np", 1.0, 0.30), _pt("np", 2.0, 0.08), _pt("np", 4.0, 0.03),
                          _pt("sld", 1.0, 0.20), _pt("sld", 5.0, 0.05), _pt("sld", 10.0, 0.02),
                          _pt("dng", 1.0, 0.10, 0.8), _pt("dng", 5.0, 0.004, 0.8), _pt("dng", 10.0, 0.0, 0.8),
                          _pt("np-schedule", 5.0, 0.01, 0.8)])
    target, picks = grid_picks(lines)
    assert target == pytest.approx(0.03)  # NP never goes below 3%
    assert {line.label: p["scale"] for line, p in picks.items()} == {
        "NP": 4.0, "SLD": 10.0, "DNG (p_max 0.8)": 5.0, "NP lambda(t) of DNG (p_max 0.8)": 5.0}


def test_the_posterior_figure_shows_the_decisive_dng_point():
    """The 2,048-sample p_max 0.8 point, not a 512-sample p_max 0.99 one that happens to sit closer to the target."""
    decisive = {**_pt("dng", 2.0, 0.0132, 0.8), "samples": 2048, "curves": True}
    small = {**_pt("dng", 2.0, 0.0098, 0.99), "samples": 512, "curves": True}
    picks = {Line("dng", 0.8): decisive, Line("dng", 0.99): small, Line("np"): {**_pt("np", 0.5, 0.0088)}}
    assert curve_pick(0.01, picks) is decisive
    assert curve_pick(0.01, {Line("dng", 0.8): {**decisive, "samples": 512}, Line("dng", 0.99): small}) is small
    assert curve_pick(0.01, {Line("np"): picks[Line("np")]}) is None


def test_mosaic_frames_removed_class_in_red():
    images = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    strip = _mosaic(images, np.array([REMOVED, 3]), REMOVED, pad=2)
    assert strip.shape == (8, 16, 3)
    assert tuple(strip[0, 0]) == (220, 30, 30)  # frame of sample 0
    assert tuple(strip[0, 8]) == (255, 255, 255)  # frame of sample 1
    assert tuple(strip[2, 2]) == (0, 0, 0)  # the image itself


def test_p_max_agreement_counts_the_shared_samples_that_differ(report):
    _, folder, summary = report
    found = {a["scale"]: a for a in summary["samplers"]["ddpm"]["p_max_agreement"]}
    assert set(found) == {1.0, 5.0} and all(a["p_max"] == [0.8, 0.99] and a["compared"] == SMALL
                                            for a in found.values())
    # the fixture's images follow the labels: at lambda0 1 the two caps remove 65% and 60% of the zeros
    base = BASE[:SMALL]
    draw = REMOVE_DRAW[:SMALL]
    assert found[1.0]["differing"] == int(((base == REMOVED) & (draw >= 0.6) & (draw < 0.65)).sum()) > 0
    assert found[5.0]["differing"] == 0
    assert (f"- lambda0 5: p_max 0.99 vs 0.8: 0 of {SMALL} samples differ (the larger cap changed nothing)."
            in (folder / "summary.md").read_text())


def test_posterior_table_shows_p_a_step_before_the_last(report):
    """Each DNG row gives, per group, the mean p one evaluation before the last and at the last: where p jumps on
    the last step (DDIM-50's flow tracker) the two differ."""
    rows, folder, _ = report
    text = (folder / "summary.md").read_text()
    dng = next(r for r in rows if r["method"] == "dng" and r["sampler"] == "ddpm")
    removed, kept = (dng["posterior_by_label"][g] for g in ("removed", "kept"))
    expected = (f"| {dng['scale']:g} | {dng['p_max']:g} | {100 * dng['forbidden_share']:.2f}% | {removed['samples']} | "
                f"{removed['mean_p'][-2]:.3f} | {removed['last_mean_p']:.3f} | {removed['mean_max_p']:.3f} | "
                f"{100 * removed['share_above_half']:.1f}% | {kept['samples']} | {kept['mean_p'][-2]:.3f} | "
                f"{kept['last_mean_p']:.3f} |")
    assert expected in text
    assert "| mean p a step before | mean last p |" in text
