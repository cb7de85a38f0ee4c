"""`python -m train t2i-eval` end to end on the tiny run's model: the report, and the tuning set beside it."""

import hashlib
import json

from train.cli import main
from train.t2i.evaluate import EVAL_SEED, TUNING_SEED, evaluation_prompts

TINY_EVAL = ["t2i-eval", "--prompts", "2", "--seeds", "1", "--steps", "2", "--batch-size", "2", "--cpu"]


def test_the_report_holds_rates_fid_instrument_golden_and_figures(tiny_t2i_run, tmp_path):
    out = tmp_path / "report"
    assert main([*TINY_EVAL, "--model", str(tiny_t2i_run / "model"), "--out", str(out)]) == 0
    report = json.loads((out / "quality.json").read_text())
    assert report["caption_set"] == "report" and report["images"] == 2 and report["device"] == "cpu"
    assert report["model_sha256"] == hashlib.sha256((tiny_t2i_run / "model" / "sha256.json").read_bytes()).hexdigest()
    assert report["all"]["object_adherence"]["denominator"] >= 2
    assert {"fid", "floor_real_vs_real"} <= set(report["detector_fid"]) and report["instrument"]["samples"] == 1000
    assert {"golden.json", "modes-1.png", "modes-2.png", "samples.png", "quality.md"} <= {p.name for p in out.iterdir()}
    per_image = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(per_image) == 2 and {"prompt", "seed", "failure", "objects", "background"} <= set(per_image[0])
    failed = sum(r["failure"] is not None for r in per_image)
    if failed:
        assert len((out / "failures.txt").read_text().splitlines()) == failed and (out / "failures.png").is_file()
    assert sum(report["failures"].values()) == failed == 2 - report["all"]["exact_match"]["numerator"]


def test_tuning_uses_other_captions_and_writes_only_rates(tiny_t2i_run, tmp_path, capsys):
    out = tmp_path / "tuning"
    assert main([*TINY_EVAL, "--model", str(tiny_t2i_run / "model"), "--out", str(out), "--tuning"]) == 0
    report = json.loads((out / "quality.json").read_text())
    assert report["caption_set"] == "tuning" and report["detector_fid"] is None and report["instrument"] is None
    failures = {"failures.png", "failures.txt"} if report["all"]["exact_match"]["numerator"] < 2 else set()
    assert {p.name for p in out.iterdir()} == {"quality.json", "quality.md", "per_image.jsonl"} | failures
    assert "(tuning captions)" in capsys.readouterr().err
    reported, _ = evaluation_prompts(200, seed=EVAL_SEED)
    tuning, _ = evaluation_prompts(200, seed=TUNING_SEED)
    assert not set(reported) & set(tuning)  # settings chosen on one set are measured on another
