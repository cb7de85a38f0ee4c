"""`python -m train t2i-study`: the smoke size end to end on the tiny testbed (report files, resume), and the
per-image outcome rules on hand-made detections."""

import json

import numpy as np
import pytest

from train.cli import main
from train.t2i.captions import ObjectSpec
from train.t2i.study.analysis import _median_interval, firing_steps, first_stable, signal_calibration
from train.t2i.study.cases import Case, attribute_cases, concept_cases, object_cases
from train.t2i.study.measure import Outcome, outcome


def test_smoke_study_writes_its_report_and_reuses_finished_cells(tiny_t2i_run, tmp_path, monkeypatch, one_torch_thread):
    argv = ["t2i-study", "--model", str(tiny_t2i_run / "model"), "--size", "smoke", "--out", str(tmp_path / "cells"),
            "--report", str(tmp_path / "report"), "--cpu"]
    assert main(argv) == 0
    report = tmp_path / "report"
    for name in ("summary.md", "results.json", "critical_step.png", "window_start.png", "removal_object.png",
                 "removal_attribute.png", "concept.png"):
        assert (report / name).is_file(), name
    results = json.loads((report / "results.json").read_text())
    assert set(results["b"]["object"]) >= {"none", "np", "windowed", "dng", "sld", "perp_neg", "adaptive", "_floor"}
    assert results["b"]["object"]["none"]["ssim_to_none"]["value"] == pytest.approx(1.0)
    for kind in ("concept-unnamed", "concept-named"):  # section d: every strength of every method, matched rows
        d = results["d"][kind]
        assert d["points"]["none"]["ssim"]["value"] == pytest.approx(1.0)
        assert [len(d["points"][m]) for m in ("np", "sld", "dng")] == [4, 4, 4]
        assert all(set(row) == {"np", "sld", "dng", "dng_minus_np", "dng_minus_sld"} for row in d["matched"].values())
    assert "## d. DNG on prompts" in (report / "summary.md").read_text()
    calibration = results["a_signals"]
    from safetensors.torch import load_file

    for signal in ("alignment", "gap"):  # never-firing thresholds: the signal is measured at every step
        recorded = load_file(tmp_path / "cells" / "cells" / f"a-object-signal-{signal}.safetensors")["signal"]
        assert recorded.shape == (2, 10) and bool(recorded.isfinite().all())
    posterior = load_file(tmp_path / "cells" / "cells" / "a-object-signal-posterior.safetensors")["signal"]
    seen = posterior[posterior.isfinite()]  # DNG's p where it observed a step: a probability, every image
    assert bool(posterior.isfinite().any(dim=1).all()) and bool(((seen >= 0) & (seen <= 1)).all())
    made = [json.loads(f.read_text()) for f in (tmp_path / "cells" / "cells").glob("*.json")]
    assert sum(c["cases"] * c["seeds"] for c in made) == 82  # the plan the progress line counts down
    adaptive = json.loads((tmp_path / "cells" / "cells" / "b-object-adaptive.json").read_text())["method"]["kwargs"]
    if calibration["chosen"] is None:  # the tiny random model drew no target: the core's default start
        assert adaptive == {"mode": "adaptive"}
    else:
        chosen = calibration["signals"][calibration["chosen"]]["threshold"]
        assert adaptive["adaptive"] == {"signal": calibration["chosen"], "threshold": chosen}
    import train.t2i.study.cells as cells

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished cell was generated again")

    monkeypatch.setattr(cells, "_generate", no_generation)
    assert main(argv) == 0


def _found(*objects, background="plain", tone="grey"):
    return {"objects": [{"shape": s, "colour": c, "size": "small", "texture": t} for s, c, t in objects],
            "background": background, "tone": tone}


def test_object_removal_and_preservation_rules():
    case = Case("a red circle and a blue square on a grey background", "blue square", "object",
                ObjectSpec("square", "blue"))
    assert outcome(case, _found(("circle", "red", "plain"))) == Outcome(True, True, True, False)
    kept_both = outcome(case, _found(("circle", "red", "plain"), ("square", "blue", "plain")))
    assert not kept_both.removed and kept_both.preserved and kept_both.adherent
    lost_all = outcome(case, _found())
    assert lost_all.removed and not lost_all.preserved
    wrong_background = outcome(case, _found(("circle", "red", "plain"), background="checkered"))
    assert wrong_background.removed and not wrong_background.preserved


def test_attribute_rules_need_the_object_to_stay():
    case = Case("a striped yellow triangle and a green cross", "striped", "attribute",
                ObjectSpec("triangle", "yellow", texture="striped"))
    assert outcome(case, _found(("triangle", "yellow", "dotted"), ("cross", "green", "plain"))).removed
    assert not outcome(case, _found(("triangle", "yellow", "striped"), ("cross", "green", "plain"))).removed
    gone = outcome(case, _found(("cross", "green", "plain")))
    assert not gone.removed and not gone.preserved


def test_concept_rules():
    unnamed = Case("three shapes on vertical stripes", "red shape", "concept-unnamed")
    three = _found(("circle", "blue", "plain"), ("square", "green", "plain"), ("cross", "cyan", "plain"),
                   background="vertical")
    assert outcome(unnamed, three).removed and outcome(unnamed, three).preserved
    with_red = _found(("circle", "red", "plain"), ("square", "green", "plain"), ("cross", "cyan", "plain"),
                      background="vertical")
    assert not outcome(unnamed, with_red).removed


def test_cases_are_deterministic_and_in_the_language():
    for make in (object_cases, attribute_cases, concept_cases):
        a, b = make(12, 3), make(12, 3)
        assert a == b
        for case in a:
            assert case.spec.count >= 1  # parses
            if case.target is not None:
                assert any((o.shape, o.colour) == (case.target.shape, case.target.colour) for o in case.spec.objects)
    for case in object_cases(12, 3):
        assert case.negative == f"{case.target.colour} {case.target.shape}"
        assert case.kept().count == case.spec.count - 1


def test_first_stable_and_median_interval():
    mask = np.array([[0, 1, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], dtype=bool)
    assert np.array_equal(first_stable(mask), np.array([3, 0, np.nan, 4]), equal_nan=True)
    result = _median_interval(np.array([1.0, 2.0, 3.0, np.nan]), np.array([0, 1, 2, 3]))
    assert result["median"] == 2.0 and result["n"] == 3 and result["ci95"][0] <= 2.0 <= result["ci95"][1]


def test_firing_steps_follow_the_adaptive_rules():
    signal = np.array([[0.1, 0.4, 0.7, 0.9], [0.2, 0.2, 0.2, 0.2], [np.nan, 0.8, 0.1, 0.1]])
    assert firing_steps(signal, "alignment", 0.5).tolist() == [2, 4, 1]  # 4: never (the run's step count)
    assert firing_steps(signal, "gap", 0.15).tolist() == [0, 4, 2]  # NaN (not measured) never fires
    assert firing_steps(signal, "posterior", 0.5).tolist() == [2, 4, 1]  # DNG's p: fires at or above


def test_signal_calibration_prefers_a_signal_that_tracks_the_critical_step():
    from types import SimpleNamespace

    import torch

    steps, seeds = 10, 2
    critical = np.array([2, 3, 5, 6, 7, 8])  # per image, from here on the target is detected in x0
    presence = (np.arange(steps)[None, :] >= critical[:, None]).astype(np.float32)
    x0 = torch.tensor(np.stack([presence, np.zeros_like(presence)], axis=-1))
    ramp = np.arange(steps)[None, :] - critical[:, None]
    tracking = torch.tensor(np.clip(0.5 + 0.1 * ramp, -1, 1), dtype=torch.float32)  # crosses 0.5 at the critical step
    unrelated = torch.tensor(np.tile(np.linspace(1, 0.1, steps), (len(critical), 1)), dtype=torch.float32)
    cell = lambda **traces: SimpleNamespace(traces=traces)  # noqa: E731
    study = SimpleNamespace(size=SimpleNamespace(seeds=seeds), steps=steps)
    result = signal_calibration(study, cell(x0=x0), {"alignment": cell(signal=tracking), "gap": cell(signal=unrelated)})
    assert result["with_critical_step"] == 6 and result["chosen"] == "alignment"
    alignment = result["signals"]["alignment"]
    assert 0.4 < alignment["threshold"] <= 0.5 and alignment["mean_abs_error"]["value"] == 0  # ties: the lowest
    assert alignment["correlation"] == pytest.approx(1.0)
    assert result["constant"]["mean_abs_error"]["value"] > 0 and alignment["minus_constant"]["value"] < 0
    assert result["signals"]["gap"]["correlation"] is None  # the same start for every image
    never = cell(x0=torch.zeros_like(x0))  # no target ever drawn: nothing to calibrate against
    assert signal_calibration(study, never, {"gap": cell(signal=unrelated)})["chosen"] is None


def test_the_plan_counts_every_image_of_a_size():
    from train.t2i.study.run import grid_windows, planned_images
    from train.t2i.study.sizes import STUDY_SIZES

    assert planned_images(STUDY_SIZES["smoke"]) == 82 and planned_images(STUDY_SIZES["cpu"]) == 2896
    assert grid_windows(STUDY_SIZES["smoke"]) == [(1, 2), (1, 10), (10, 1)]  # cut at the last step, no repeats
