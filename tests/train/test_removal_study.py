"""`python -m train removal` end to end on tiny random models: outputs, resume after SIGKILL, input checks."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from removal_fixtures import study_dirs
from safetensors.torch import load_file
from train_run_helpers import REPO, kill_once_exists

from train.cli import main
from train.removal.paired import RESAMPLES
from train.removal.quality import FID_RESAMPLES

TINY_SWEEP = ["--samples", "6", "--batch-size", "4", "--ddpm-steps", "4", "--ddim-steps", "4", "--np-scales", "1",
              "--sld-scales", "1,3", "--dng-lambda0", "2", "--dng-p-max", "0.9,0.99", "--fid", "classifier",
              "--fid-reference-count", "40", "--cpu", "--threads", "1", "--ddim-methods", "dng,np-schedule",
              "--schedule-lambda0", "2", "--decisive-samples", "8", "--decisive-dng-lambda0", "2",
              "--decisive-dng-p-max", "0.9", "--decisive-np-scales", "1", "--decisive-sld-scales", "1,3"]


def removal_argv(dirs, out, *extra):
    return ["removal", "--dataset", "mnist", "--remove", "0", "--uncond", str(dirs["uncond"]), "--forget",
            str(dirs["forget"]), "--oracle", str(dirs["oracle"]), "--classifier", str(dirs["classifier"]),
            "--out", str(out), *TINY_SWEEP, *extra]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return study_dirs(tmp_path_factory.mktemp("study"))


def _without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_second", "device")} for row in rows]


def test_removal_writes_every_point_and_the_report(dirs, tmp_path, mnist_dir):
    assert main(removal_argv(dirs, tmp_path / "sweep", "--report", str(tmp_path / "report"))) == 0
    rows = json.loads((tmp_path / "report" / "points.json").read_text())
    names = [r["name"] for r in rows]
    assert names == ["ddpm4-none-0", "ddpm4-oracle-0", "ddpm4-np-1", "ddpm4-sld-1", "ddpm4-sld-3",
                     "ddpm4-dng-2-pmax0.9", "ddpm4-dng-2-pmax0.99", "ddim4-none-0", "ddim4-oracle-0",
                     "ddim4-dng-2-pmax0.9", "ddim4-dng-2-pmax0.99", "ddpm4-np-schedule-2-pmax0.9",
                     "ddim4-np-schedule-2-pmax0.9"]
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        samples = 6 if row["p_max"] == 0.99 else 8  # the decisive points have 8
        assert sum(row["class_histogram"]) == samples and row["samples"] == samples and row["diverged_samples"] == 0
        assert 0 <= row["forbidden_share"] <= 1 and row["kl_uniform_kept"] >= 0
        assert row["fid_classifier_kept"] >= 0 and "fid_inception_kept" not in row
        assert np.isfinite(row["kid_classifier_kept"]) and row["floor"]["n"] == samples
        assert row["floor"]["fid_classifier_kept"] >= 0 and "kid_classifier_balanced" in row["floor"]
        assert row["settings"]["seed"] == 0 and row["settings"]["models"]
        expected_rows = 1 if row["method"] in ("none", "oracle") else 2
        assert row["rows_per_sample_step"] >= expected_rows if row["sampler"] == "ddim" and row["method"] == "dng" \
            else row["rows_per_sample_step"] == expected_rows
        if row["method"] == "dng":  # the posterior after the last step's evaluation, not finish()'s artefact
            assert len(row["curves"]["p"]) == 4 and 0 < row["mean_final_posterior"] <= row["p_max"] + 1e-9
            assert len(row["lambda_schedule"]["mean_lambda"]) == 4
            tensors = load_file(str(tmp_path / "sweep" / "points" / f"{row['name']}.safetensors"))
            last = tensors["posterior_last_step"]
            assert row["mean_final_posterior"] == pytest.approx(float(last.mean()), rel=1e-12)
            assert row["curves"]["p"][-1] == [float(last[i]) for i in row["curves"]["indices"]]
            assert row["curves"]["labels"] == [int(tensors["labels"][i]) for i in row["curves"]["indices"]]
        if row["method"] == "np-schedule":  # NP with the mean lambda(k) of the DNG point it follows
            source = by_name[row["name"].replace("np-schedule", "dng")]
            assert row["applied_lambda"] == pytest.approx(source["lambda_schedule"]["mean_lambda"], rel=1e-12)
            assert row["settings"]["schedule_source"] == {"name": source["name"], "key": source["key"]}
    tensors = load_file(str(tmp_path / "sweep" / "points" / "ddpm4-np-1.safetensors"))
    assert len(tensors["features_classifier"]) == 8 and tensors["resample_kid_classifier_kept"].shape == (RESAMPLES,)
    assert tensors["resample_fid_classifier_balanced"].shape == (FID_RESAMPLES,)
    with open(tmp_path / "report" / "points.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == [r["method"] for r in rows]
    dng = next(r for r in table if r["method"] == "dng")
    # the CPU preset's respaced ancestral sampler injects beta_tilde, and the tracker follows it
    assert (dng["dng_transition_variance"], dng["dng_prior"], dng["seed"], dng["sampler_variance"]) == (
        "beta_tilde", "0.25", "0", "beta_tilde")
    assert len(dng["model_unconditional"]) == 16 and dng["sld_threshold"] == ""
    assert sum(map(int, dng["class_histogram"].split())) == 8  # a decisive point
    assert (tmp_path / "report" / "summary.md").is_file()
    assert len(list((tmp_path / "sweep" / "points").glob("*.safetensors"))) == len(rows)


def test_interrupted_sweep_resumes_to_the_same_points(dirs, tmp_path, mnist_dir):
    """SIGKILL after the first point is on disk; the rerun keeps it, runs the rest, and every point equals an
    uninterrupted sweep's (same samples: common random numbers; same metrics)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "train", *removal_argv(dirs, tmp_path / "killed")]
    kill_once_exists(cmd, env, tmp_path / "killed" / "points" / "ddpm4-none-0.json")
    first = (tmp_path / "killed" / "points" / "ddpm4-none-0.json").read_text()
    assert not (tmp_path / "killed" / "points.json").exists()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    assert (tmp_path / "killed" / "points" / "ddpm4-none-0.json").read_text() == first  # kept, not rerun
    assert main(removal_argv(dirs, tmp_path / "whole")) == 0
    resumed = json.loads((tmp_path / "killed" / "points.json").read_text())
    whole = json.loads((tmp_path / "whole" / "points.json").read_text())
    assert _without_timing(resumed) == _without_timing(whole)


class Interrupt:
    """Wraps a function: counts its calls and raises KeyboardInterrupt (what a kill or Ctrl-C leaves) on call
    ``on`` (None: never)."""

    def __init__(self, real, on=None):
        self.real, self.on, self.calls = real, on, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.on:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_a_point_stopped_inside_resumes_from_its_last_batch_and_feature_chunk(dirs, tmp_path, monkeypatch,
                                                                               mnist_dir):
    """Stopped in DNG's second batch, then in its second chunk of features: each rerun makes only what was not
    saved, and the point (images, DNG records, features, metrics) equals an uninterrupted run's."""
    from safetensors import safe_open

    from train.removal import evaluation, sweep, unfinished

    monkeypatch.setattr(evaluation, "FEATURE_CHUNK", 3)  # 8 samples: features in chunks of 3, 3, 2
    monkeypatch.setattr(unfinished, "SAVE_EVERY_SECONDS", 0.0)  # saved after every batch and chunk
    argv = ["--samplers", "ddpm", "--methods", "dng", "--dng-p-max", "0.9"]  # none, oracle, DNG: 8 samples each
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    in_progress = stopped / "points" / "ddpm4-dng-2-pmax0.9.unfinished.safetensors"

    def saved():
        with safe_open(in_progress, "pt") as f:
            return len(f.get_tensor("images")), {k: len(f.get_tensor(k)) for k in f.keys() if k.startswith("feat")}

    sampling = Interrupt(sweep.sample_batch, on=6)  # batches of 4: none 2, oracle 2, DNG's second
    monkeypatch.setattr(sweep, "sample_batch", sampling)
    assert main(removal_argv(dirs, stopped, *argv)) == 130
    assert saved() == (4, {}) and not in_progress.with_name("ddpm4-dng-2-pmax0.9.json").exists()
    sampling = Interrupt(sweep.sample_batch.real)
    featurising = Interrupt(evaluation.compute_features, on=2)
    monkeypatch.setattr(sweep, "sample_batch", sampling)
    monkeypatch.setattr(evaluation, "compute_features", featurising)
    assert main(removal_argv(dirs, stopped, *argv)) == 130
    assert sampling.calls == 1 and saved() == (8, {"features_classifier": 3})
    featurising = Interrupt(featurising.real)
    monkeypatch.setattr(evaluation, "compute_features", featurising)
    assert main(removal_argv(dirs, stopped, *argv)) == 0
    assert sampling.calls == 1 and featurising.calls == 2 and not in_progress.exists()
    assert main(removal_argv(dirs, whole, *argv)) == 0
    resumed = json.loads((stopped / "points.json").read_text())
    assert _without_timing(resumed) == _without_timing(json.loads((whole / "points.json").read_text()))
    a = load_file(str(in_progress.with_name("ddpm4-dng-2-pmax0.9.safetensors")))
    b = load_file(str(whole / "points" / "ddpm4-dng-2-pmax0.9.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)


def test_a_changed_setting_reruns_only_its_points(dirs, tmp_path, mnist_dir):
    out = tmp_path / "sweep"
    assert main(removal_argv(dirs, out)) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    assert main(removal_argv(dirs, out, "--sld-threshold", "0.02")) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["ddpm4-sld-1.json", "ddpm4-sld-3.json"]
    # the ablation's key holds its DNG point's: a DNG setting reruns both, and nothing else
    assert main(removal_argv(dirs, out, "--sld-threshold", "0.02", "--dng-temperature", "0.5")) == 0
    again = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    assert sorted(name for name in after if after[name] != again[name]) == [
        "ddim4-dng-2-pmax0.9.json", "ddim4-dng-2-pmax0.99.json", "ddim4-np-schedule-2-pmax0.9.json",
        "ddpm4-dng-2-pmax0.9.json", "ddpm4-dng-2-pmax0.99.json", "ddpm4-np-schedule-2-pmax0.9.json"]


def _leaves(value, path=""):
    """Every number / string of a nested JSON value, by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}/{i}").items()}
    return {path: value}


def test_raised_decisive_samples_grow_points_into_a_fresh_runs(dirs, tmp_path, mnist_dir):
    """--decisive-samples 8 -> 12: the decisive points draw only samples 8-11 (DNG included, from its stored
    records); the np-schedule ablation starts over (its DNG table changed). Every point equals a fresh 12-sample
    sweep's: images and labels exactly, metrics to float rounding (the feature network saw other batches)."""
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert main(removal_argv(dirs, grown)) == 0
    assert main(removal_argv(dirs, grown, "--decisive-samples", "12")) == 0
    assert main(removal_argv(dirs, fresh, "--decisive-samples", "12")) == 0
    grown_rows = json.loads((grown / "points.json").read_text())
    fresh_rows = json.loads((fresh / "points.json").read_text())
    assert {r["name"] for r in grown_rows if "grown_from" in r} == {
        "ddpm4-none-0", "ddpm4-oracle-0", "ddpm4-np-1", "ddpm4-sld-1", "ddpm4-sld-3", "ddpm4-dng-2-pmax0.9",
        "ddim4-none-0", "ddim4-oracle-0", "ddim4-dng-2-pmax0.9"}
    assert all(r["grown_from"] == 8 and r["samples"] == 12 for r in grown_rows if "grown_from" in r)
    for mine, theirs in zip(_without_timing(grown_rows), _without_timing(fresh_rows), strict=True):
        mine.pop("grown_from", None)
        mine, theirs = _leaves(mine), _leaves(theirs)
        assert mine.keys() == theirs.keys()
        for path, value in theirs.items():
            if isinstance(value, float):
                assert mine[path] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), path
            else:
                assert mine[path] == value, path
        a = load_file(str(grown / "points" / f"{theirs['/name']}.safetensors"))
        b = load_file(str(fresh / "points" / f"{theirs['/name']}.safetensors"))
        assert a.keys() == b.keys()
        for key in ("images", "labels", "posterior_last_step", "dng_p", "dng_lambda"):
            if key in b:
                assert torch.equal(a[key], b[key]), (theirs["/name"], key)


@pytest.mark.parametrize("broken, message", [
    ("uncond", "--uncond"), ("classifier", "no classifier at"), ("oracle", "--oracle")])
def test_bad_inputs_stop_before_sampling(dirs, tmp_path, capsys, broken, message):
    argv = removal_argv(dirs, tmp_path / "sweep")
    argv[argv.index(f"--{broken}") + 1] = str(tmp_path / "missing")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "sweep" / "points").exists()


@pytest.mark.parametrize("option, value", [("--dng-p-max", "1.5"), ("--dng-min-step-ratio", "1")])
def test_bad_settings_are_refused_with_one_line(dirs, tmp_path, capsys, option, value):
    assert main(removal_argv(dirs, tmp_path / "sweep", option, value)) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_help_lists_the_methods():
    out = subprocess.run([sys.executable, "-m", "train", "removal", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    for method in ("np ", "sld ", "dng "):
        assert method in out


def test_points_spread_over_processes_equal_a_single_process_sweep(dirs, tmp_path, mnist_dir):
    """torchrun (what `accelerate launch` starts) with two CPU processes: the points are dealt out and merged, and
    every point equals the single-process sweep's: a sample's noise does not depend on the process."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "train", *removal_argv(dirs, tmp_path / "two")],
                   cwd=REPO, env=env, check=True, capture_output=True)
    assert main(removal_argv(dirs, tmp_path / "one")) == 0
    two = json.loads((tmp_path / "two" / "points.json").read_text())
    one = json.loads((tmp_path / "one" / "points.json").read_text())
    assert _without_timing(two) == _without_timing(one)


def test_reproduce_removal_trains_then_reuses_and_resumes(tmp_path, monkeypatch, capsys, mnist_dir):
    """One command trains the four models and runs the sweep; run again it reuses everything; with more steps
    planned for the all-class model it resumes that one and reruns only the points that depend on it."""
    from train.removal import reproduce

    plan = reproduce.TrainingPlan("mnist-tiny", 4, 2, 4, "mnist", classifier_epochs=1, classifier_limit=512,
                                  classifier_test_limit=100, ddpm_limit=64)
    monkeypatch.setitem(reproduce.TRAINING_PLANS, ("mnist", "cpu"), plan)
    runs = tmp_path / "runs"
    argv = ["reproduce-removal", "--dataset", "mnist", "--remove", "0", "--runs", str(runs), "--training", "cpu",
            *TINY_SWEEP]
    assert main(argv) == 0
    for name in ("ddpm-all", "ddpm-only0", "ddpm-drop0"):
        assert (runs / name / "model" / "config.json").is_file()
    assert (runs / "report" / "points.csv").is_file() and (runs / "report" / "summary.md").is_file()
    points = runs / "sweep" / "points"
    before = {p.name: p.stat().st_mtime_ns for p in points.glob("*.json")}

    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().err.count("reusing") == 4
    assert {p.name: p.stat().st_mtime_ns for p in points.glob("*.json")} == before

    monkeypatch.setitem(reproduce.TRAINING_PLANS, ("mnist", "cpu"), dataclasses.replace(plan, all_steps=6))
    assert main(argv) == 0
    assert "--resume" in capsys.readouterr().err
    rerun = sorted(n for n, t in before.items() if (points / n).stat().st_mtime_ns != t)
    assert rerun == sorted(n for n in before if "oracle" not in n)  # every point but the oracle's uses ddpm-all


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    from train.removal import reproduce

    calls = []

    def train(folder, resume):
        calls.append((folder, resume))

    run = tmp_path / "ddpm-all"
    run.mkdir()
    (run / "config.json").write_text("{}")
    reproduce._train(train, run, finished=False)
    assert calls == [(run, False)]  # a fresh run in the same folder
    assert [p.name.startswith("ddpm-all.no-checkpoint-") for p in tmp_path.iterdir()] == [True]
    (run / "checkpoint-4").mkdir(parents=True)
    reproduce._train(train, run, finished=False)
    assert calls[-1] == (run, True)  # resumed


def test_ctrl_c_says_how_to_continue(dirs, tmp_path, capsys, monkeypatch, mnist_dir):
    from train.removal import study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_sweep", interrupted)
    assert main(removal_argv(dirs, tmp_path / "sweep")) == 130
    err = capsys.readouterr().err
    assert "run the same `python -m train removal` command again" in err and "Traceback" not in err


def test_a_sample_that_overflows_is_kept_saturated_and_counted(dirs, monkeypatch):
    """An extreme scale may overflow a sample to inf/NaN: the sweep goes on, the point counts it."""
    import torch

    from train.removal import sweep
    from train.removal.models import load_study_models
    from train.removal.points import Point
    from train.removal.presets import MNIST_CPU

    real = sweep.sample_batch

    def overflowing(*args, **kwargs):
        x, *rest = real(*args, **kwargs)
        x[0] = float("inf")
        x[1, 0, 0, 0] = float("nan")
        return x, *rest

    monkeypatch.setattr(sweep, "sample_batch", overflowing)
    models = load_study_models(dirs["uncond"], dirs["forget"], None, torch.device("cpu"))
    preset = dataclasses.replace(MNIST_CPU, samples=3, batch_size=3, ddpm_steps=3, curve_samples=0,
                                 decisive_samples=None)
    sampled = sweep.sample_point(Point("np", 1.0, "ddpm", 3), preset, models, torch.device("cpu"), None)
    assert sampled.diverged == 2 and sampled.images.dtype == torch.uint8 and bool((sampled.images[0] == 255).all())


def test_a_point_without_a_terminal_logs_each_batch(dirs, capsys):
    """A nohup'd sweep writes a log, where tqdm's bar is off: a line per batch says how far the point is."""
    import torch

    from train.removal import sweep
    from train.removal.models import load_study_models
    from train.removal.points import Point
    from train.removal.presets import MNIST_CPU

    models = load_study_models(dirs["uncond"], dirs["forget"], None, torch.device("cpu"))
    preset = dataclasses.replace(MNIST_CPU, samples=4, batch_size=2, ddpm_steps=2, curve_samples=0,
                                 decisive_samples=None)
    sweep.sample_point(Point("np", 1.0, "ddpm", 2), preset, models, torch.device("cpu"), None)
    lines = [line for line in capsys.readouterr().err.splitlines() if "samples," in line]
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["2/4 samples", "4/4 samples"]
    assert "min of sampling left" in lines[-1]
