"""`python -m train t2i-study`: the smoke size end to end on the tiny testbed (report files, resume), and the
per-image outcome rules on hand-made detections."""

import json

import numpy as np
import pytest

from train.cli import main
from train.t2i.captions import ObjectSpec
from train.t2i.study.analysis import _median_interval, first_stable
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
