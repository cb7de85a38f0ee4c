"""The class-removal report: files and their size, the grid's matching rule, best-at-threshold numbers, verdicts."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from train.removal.presets import MNIST_CPU
from train.removal.report import (
    MAX_PNG_BYTES,
    Line,
    _mosaic,
    grid_picks,
    method_lines,
    write_report,
)

REMOVED = 0
CURVE_SAMPLES = 4
CURVE_STEPS = 6

# (method, p_max, scale, forbidden share, KL, FID Inception, FID classifier), DDPM
DDPM = [
    ("none", None, 0.0, 0.10, 0.12, 7.0, 1.0),
    ("oracle", None, 0.0, 0.002, 0.01, 6.0, 0.5),
    ("np", None, 0.5, 0.08, 0.05, 10.0, 5.0),
    ("np", None, 1.0, 0.03, 0.08, 14.0, 6.0),
    ("np", None, 2.0, 0.009, 0.20, 20.0, 7.0),
    ("np", None, 4.0, 0.0, 0.50, 35.0, 9.0),
    ("sld", None, 1.0, 0.06, 0.04, 9.0, 3.0),
    ("sld", None, 5.0, 0.02, 0.06, 11.0, 2.0),
    ("sld", None, 10.0, 0.012, 0.09, 13.0, 2.5),
    ("dng", 0.8, 1.0, 0.05, 0.03, 8.5, 4.0),
    ("dng", 0.8, 5.0, 0.03, 0.035, 9.0, 4.5),
    ("dng", 0.8, 10.0, 0.02, 0.04, 9.5, 5.0),
    ("dng", 0.99, 1.0, 0.04, 0.03, 8.6, 4.2),
    ("dng", 0.99, 5.0, 0.008, 0.04, 9.2, 4.4),
    ("dng", 0.99, 10.0, 0.001, 0.06, 10.5, 4.8),
]
# DDIM: DNG only (the preset's ddim_methods); none of its points reaches 1%
DDIM = [
    ("none", None, 0.0, 0.11, 0.13, 7.5, 1.1),
    ("oracle", None, 0.0, 0.003, 0.02, 6.5, 0.6),
    ("dng", 0.99, 1.0, 0.05, 0.04, 9.0, 4.0),
    ("dng", 0.99, 5.0, 0.015, 0.05, 9.5, 4.1),
    ("dng", 0.99, 10.0, 0.012, 0.07, 11.0, 4.3),
]


def _name(sampler, method, scale, p_max):
    tail = f"-pmax{p_max:g}" if p_max is not None else ""
    return f"{sampler}50-{method}-{scale:g}{tail}"


def _curves(p_max, scale):
    steps = list(range(CURVE_STEPS))
    p = [[min(p_max, 0.25 + 0.1 * i * (j % 2)) for j in range(CURVE_SAMPLES)] for i in steps]
    return {"step": steps, "sigma": [10.0 / (i + 1) for i in steps], "p": p,
            "lambda": [[scale * v / (1 - v) for v in per_step] for per_step in p]}


def _row(sampler, spec, fids):
    method, p_max, scale, share, kl, fid_inception, fid_classifier = spec
    row = {"name": _name(sampler, method, scale, p_max), "method": method, "scale": scale, "sampler": sampler,
           "steps": 50, "p_max": p_max, "samples": 20, "class_histogram": [0] * 10, "forbidden_share": share,
           "kl_uniform_kept": kl, "kl_data_kept": kl, "mean_final_posterior": 0.1 if method == "dng" else None,
           "rows_per_sample_step": 2.0, "seconds": 1.0, "samples_per_second": 20.0,
           "curves": _curves(p_max, scale) if method == "dng" else None}
    if "inception" in fids:
        row.update(fid_inception_kept=fid_inception, fid_inception_all=fid_inception + 1)
    if "classifier" in fids:
        row.update(fid_classifier_kept=fid_classifier, fid_classifier_all=fid_classifier + 1)
    return row


def _write_points(root, rows, channels, size=8, samples=20):
    folder = root / "points"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for row in rows:
        images = torch.randint(0, 256, (samples, channels, size, size), generator=generator, dtype=torch.uint8)
        labels = torch.arange(samples, dtype=torch.int64) % 10  # samples 0 and 10 are in the removed class
        tensors = {"images": images, "labels": labels}
        if row["method"] == "dng":
            tensors["final_posterior"] = torch.rand(samples, generator=generator)
        save_file(tensors, str(folder / f"{row['name']}.safetensors"))


def _study(tmp_path, samplers=("ddpm", "ddim"), fids=("inception", "classifier"), channels=1, size=8):
    rows = [_row("ddpm", s, fids) for s in DDPM] if "ddpm" in samplers else []
    rows += [_row("ddim", s, fids) for s in DDIM] if "ddim" in samplers else []
    _write_points(tmp_path, rows, channels, size)
    preset = dataclasses.replace(MNIST_CPU, removed=REMOVED, samplers=samplers, fid_networks=fids)
    return rows, preset


def _assert_small_pngs(report_dir, names):
    for name in names:
        path = report_dir / name
        assert path.is_file(), name
        assert 0 < path.stat().st_size < MAX_PNG_BYTES, (name, path.stat().st_size)


# ------------------------------------------------------------------------------------------ the full report
@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """Both samplers and both FIDs, written once for the tests that only read the report."""
    root = tmp_path_factory.mktemp("sweep")
    rows, preset = _study(root)
    return rows, root / "report", write_report(rows, preset, root, root / "report")


def test_write_report_files_and_sizes(full_report):
    _, report, summary = full_report
    _assert_small_pngs(report, ["tradeoff.png", "grids_ddpm.png", "grids_ddim.png", "posterior_curves.png"])
    assert (report / "summary.md").is_file()
    assert summary["metrics"] == ["kl_uniform_kept", "fid_inception_kept", "fid_classifier_kept"]
    assert list(summary["samplers"]) == ["ddpm", "ddim"]
    text = (report / "summary.md").read_text()
    assert "## DDPM (50 steps)" in text and "## DDIM (50 steps)" in text
    assert "| NP | no point qualifies" not in text  # NP reaches 1% on DDPM
    assert "| SLD | no point qualifies | no point qualifies | no point qualifies |" in text


def test_grid_rule_on_the_sweep(full_report):
    summary = full_report[2]
    ddpm = summary["samplers"]["ddpm"]["grid"]
    # lowest shares: NP 0, SLD 1.2%, DNG 0.8 2%, DNG 0.99 0.1% -> every method reaches 2%
    assert ddpm["target"] == pytest.approx(0.02)
    assert ddpm["points"] == {"NP": "ddpm50-np-1",  # 3% (0.010 away) beats 0.9% (0.011 away)
                              "SLD": "ddpm50-sld-5",
                              "DNG (p_max 0.8)": "ddpm50-dng-10-pmax0.8",
                              "DNG (p_max 0.99)": "ddpm50-dng-5-pmax0.99"}
    assert summary["samplers"]["ddpm"]["curve_point"] == "ddpm50-dng-10-pmax0.8"  # exactly on the target
    ddim = summary["samplers"]["ddim"]["grid"]
    assert ddim["target"] == pytest.approx(0.012)
    assert ddim["points"] == {"DNG (p_max 0.99)": "ddim50-dng-10-pmax0.99"}


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
                          _pt("dng", 1.0, 0.10, 0.8), _pt("dng", 5.0, 0.004, 0.8), _pt("dng", 10.0, 0.0, 0.8)])
    target, picks = grid_picks(lines)
    assert target == pytest.approx(0.03)  # NP never goes below 3%
    assert {line.label: p["scale"] for line, p in picks.items()} == {"NP": 4.0, "SLD": 10.0,
                                                                      "DNG (p_max 0.8)": 5.0}


def test_best_at_threshold_numbers(full_report):
    summary = full_report[2]
    best = summary["samplers"]["ddpm"]["best"]
    one, five = best[0.01], best[0.05]
    assert one["NP"]["fid_inception_kept"] == {"value": 20.0, "scale": 2.0, "forbidden_share": 0.009,
                                               "name": "ddpm50-np-2"}
    assert one["NP"]["kl_uniform_kept"]["value"] == 0.20
    assert one["DNG (p_max 0.99)"]["fid_inception_kept"]["value"] == 9.2
    assert one["DNG (p_max 0.99)"]["fid_inception_kept"]["scale"] == 5.0
    assert one["SLD"] == {"kl_uniform_kept": None, "fid_inception_kept": None, "fid_classifier_kept": None}
    assert one["DNG (p_max 0.8)"]["fid_inception_kept"] is None
    assert five["NP"]["fid_inception_kept"]["value"] == 14.0
    assert five["SLD"]["fid_inception_kept"]["value"] == 11.0
    assert five["DNG (p_max 0.8)"]["fid_inception_kept"]["value"] == 8.5
    assert five["DNG (p_max 0.99)"]["kl_uniform_kept"] == {"value": 0.03, "scale": 1.0, "forbidden_share": 0.04,
                                                           "name": "ddpm50-dng-1-pmax0.99"}
    assert five["SLD"]["fid_classifier_kept"]["value"] == 2.0
    baselines = summary["samplers"]["ddpm"]["baselines"]
    assert baselines["oracle"]["fid_inception_kept"] == 6.0 and baselines["none"]["forbidden_share"] == 0.10
    assert summary["samplers"]["ddim"]["best"][0.01]["DNG (p_max 0.99)"]["fid_inception_kept"] is None


def _lowest(rows, sampler, key, threshold):
    """Independent of the report: the label of the guided row with the lowest ``key`` at the threshold."""
    ok = [r for r in rows if r["sampler"] == sampler and r["method"] in ("np", "sld", "dng")
          and r["forbidden_share"] <= threshold + 1e-12]
    best = min(ok, key=lambda r: r[key])
    return f"DNG (p_max {best['p_max']:g})" if best["method"] == "dng" else best["method"].upper()


def test_verdicts_name_the_lowest_method(full_report):
    rows, report, summary = full_report
    verdicts = summary["samplers"]["ddpm"]["verdicts"]
    for threshold in (0.01, 0.05):
        fid_inception, fid_classifier = verdicts[threshold][1], verdicts[threshold][2]
        assert f": {_lowest(rows, 'ddpm', 'fid_inception_kept', threshold)} best" in fid_inception
        assert f": {_lowest(rows, 'ddpm', 'fid_classifier_kept', threshold)} best" in fid_classifier
    assert ": DNG (p_max 0.8) best" in verdicts[0.05][1]  # Inception FID
    assert ": SLD best" in verdicts[0.05][2]  # the classifier FID ranks differently
    one = verdicts[0.01][1]
    assert one.startswith("At forbidden share <= 1% (DDPM, 50 steps), FID Inception (kept classes): "
                          "DNG (p_max 0.99) 9.20 vs NP 20.00: DNG (p_max 0.99) best")
    assert "no point of SLD, DNG (p_max 0.8) qualifies" in one
    assert "(oracle 6.00)" in one
    ddim = summary["samplers"]["ddim"]["verdicts"][0.01][1]
    assert "no method reaches it" in ddim
    text = (report / "summary.md").read_text()
    assert one in text and ddim in text


def test_only_classifier_fid(tmp_path):
    rows, preset = _study(tmp_path, fids=("classifier",), channels=3)
    report = tmp_path / "report"
    summary = write_report(rows, preset, tmp_path, report)
    assert summary["metrics"] == ["kl_uniform_kept", "fid_classifier_kept"]
    _assert_small_pngs(report, ["tradeoff.png", "grids_ddpm.png", "grids_ddim.png", "posterior_curves.png"])
    text = (report / "summary.md").read_text()
    assert "FID classifier (kept classes)" in text and "Inception" not in text
    assert ": SLD best" in summary["samplers"]["ddpm"]["verdicts"][0.05][1]


def test_only_ddpm_sampler(tmp_path):
    rows, preset = _study(tmp_path, samplers=("ddpm",))
    report = tmp_path / "report"
    summary = write_report(rows, preset, tmp_path, report)
    assert list(summary["samplers"]) == ["ddpm"]
    _assert_small_pngs(report, ["tradeoff.png", "grids_ddpm.png", "posterior_curves.png"])
    assert not (report / "grids_ddim.png").exists()
    assert "DDIM" not in (report / "summary.md").read_text()


def test_no_fid_and_no_dng(tmp_path):
    rows, preset = _study(tmp_path, samplers=("ddpm",), fids=())
    rows = [r for r in rows if r["method"] != "dng"]
    summary = write_report(rows, preset, tmp_path, tmp_path / "report")
    assert summary["metrics"] == ["kl_uniform_kept"]
    assert "posterior_curves" not in summary["files"]
    _assert_small_pngs(tmp_path / "report", ["tradeoff.png", "grids_ddpm.png"])


def test_large_rgb_grid_stays_under_the_limit(tmp_path):
    """CIFAR-sized noise (incompressible): the palette / downscale fallback keeps the PNG small."""
    rows, preset = _study(tmp_path, samplers=("ddpm",), channels=3, size=32)
    write_report(rows, preset, tmp_path, tmp_path / "report")
    _assert_small_pngs(tmp_path / "report", ["grids_ddpm.png"])


def test_mosaic_frames_removed_class_in_red():
    images = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    strip = _mosaic(images, np.array([REMOVED, 3]), REMOVED, pad=2)
    assert strip.shape == (8, 16, 3)
    assert tuple(strip[0, 0]) == (220, 30, 30)  # frame of sample 0
    assert tuple(strip[0, 8]) == (255, 255, 255)  # frame of sample 1
    assert tuple(strip[2, 2]) == (0, 0, 0)  # the image itself
