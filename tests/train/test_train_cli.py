"""What a first-time user of `python -m train` meets: help texts, bad paths, bad model folders, preset on resume."""

import argparse
import json

import pytest
import torch
from diffusers import UNet2DModel

from train.cli import build_parser, main
from train.ddpm import make_noise_scheduler, save_final_model
from train.presets import DDPM_PRESETS

TINY = ["ddpm", "--dataset", "mnist", "--preset", "mnist-tiny", "--cpu"]
OUR_COMMANDS = ("ddpm", "classifier", "sample")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_help_is_formatted_and_every_option_explains_itself():
    parser = build_parser()
    top_help = parser.format_help()
    assert "%%" not in top_help and "99.3% test accuracy" in top_help  # the epilog is printed as written
    for name in OUR_COMMANDS:
        command = _subparsers(parser)[name]
        undocumented = [a.option_strings for a in command._actions if a.option_strings and not a.help]
        assert not undocumented, f"{name}: options without help {undocumented}"
    sample_help = _subparsers(parser)["sample"].format_help()
    assert "(default: 256)" in sample_help and "(default: 100)" in sample_help


def test_help_names_the_defaults_that_the_code_uses():
    commands = _subparsers(build_parser())
    ddpm_help, classifier_help = (" ".join(commands[name].format_help().split()) for name in ("ddpm", "classifier"))
    assert "runs/ddpm-<preset>" in ddpm_help and "runs/classifier-<preset>" in classifier_help
    assert "once per epoch" in classifier_help
    assert f"mnist-cpu {DDPM_PRESETS['mnist-cpu'].checkpoint_every}" in ddpm_help


@pytest.mark.parametrize("command", [TINY, ["classifier", "--dataset", "mnist", "--cpu"]])
def test_an_output_dir_that_is_a_file_is_one_line(command, tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("")
    for output_dir in (a_file, a_file / "run"):
        assert main([*command, "--output-dir", str(output_dir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{a_file} is a file" in err


def _model_dir(folder):
    preset = DDPM_PRESETS["mnist-tiny"]
    torch.manual_seed(0)
    save_final_model(UNet2DModel(**preset.unet), None, make_noise_scheduler(preset), preset.to_dict(), folder)
    return folder


def _fail_if_sampling(monkeypatch):
    def sample(*args, **kwargs):
        raise AssertionError("sampled before checking every input")

    monkeypatch.setattr("train.label_samples.sample", sample)


def test_sample_refuses_a_corrupt_model_dir_in_one_line(tmp_path, capsys, monkeypatch):
    _fail_if_sampling(monkeypatch)
    model = _model_dir(tmp_path / "model")
    weights = model / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert main(["sample", "--model", str(model), "--cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {model} is corrupt: {weights.name} does not match its recorded SHA-256\n"
    # Without the hash record (a model/ saved by an older version): a warning, then diffusers' complaint in one line.
    (model / "sha256.json").unlink()
    assert main(["sample", "--model", str(model), "--cpu"]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning:") and "unverified" in warning
    assert error.startswith(f"error: {model} cannot be loaded:")
    weights.rename(model / "diffusion_pytorch_model.bin")
    assert main(["sample", "--model", str(model), "--cpu"]) == 2
    assert "only safetensors weights are loaded" in capsys.readouterr().err


def test_an_old_model_dir_without_hashes_still_samples(tmp_path, capsys):
    model = _model_dir(tmp_path / "model")
    assert json.loads((model / "sha256.json").read_text()).keys() == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "scheduler_config.json",
        "training_config.json",
    }
    (model / "sha256.json").unlink()
    assert main(["sample", "--model", str(model), "--num", "2", "--steps", "2", "--cpu"]) == 0
    captured = capsys.readouterr()
    assert "unverified" in captured.err and json.loads(captured.out)["num_samples"] == 2


def test_sample_checks_classifier_and_grid_before_sampling(tmp_path, capsys, monkeypatch):
    _fail_if_sampling(monkeypatch)
    model = _model_dir(tmp_path / "model")
    assert main(["sample", "--model", str(model), "--classifier", str(tmp_path / "missing"), "--cpu"]) == 2
    assert "no classifier at" in capsys.readouterr().err
    assert main(["sample", "--model", str(model), "--grid", str(model / "config.json" / "g.png"), "--cpu"]) == 2
    assert "config.json is a file" in capsys.readouterr().err


def test_resume_takes_the_checkpoints_preset_or_names_it(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    data = ["--data-dir", str(mnist_dir), "--limit", "64", "--output-dir", str(run)]  # one mnist-cpu batch
    assert main([*TINY, *data, "--max-steps", "2"]) == 0
    capsys.readouterr()
    without_preset = [a for a in TINY if a not in ("--preset", "mnist-tiny")]
    assert main([*without_preset, *data, "--preset", "mnist-cpu", "--max-steps", "4", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "trained with preset mnist-tiny, this run uses mnist-cpu: add --preset mnist-tiny" in err
    assert err.count("\n") == 1  # not the two UNet configs key by key
    assert main([*without_preset, *data, "--max-steps", "4", "--resume", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["name"] == "mnist-tiny"
    assert (run / "checkpoint-4").is_dir()


def test_cpu_defaults_stay_small_without_a_gpu_or_native_bf16(monkeypatch):
    chosen = {}
    monkeypatch.setattr("train.ddpm.train_ddpm", lambda preset, *a, **k: chosen.update(ddpm=preset.name))
    monkeypatch.setattr("train.classifier.train_classifier", lambda preset, *a, **k: chosen.update(clf=preset.name))
    assert main(["ddpm", "--dataset", "mnist", "--cpu"]) == 0 and chosen["ddpm"] == "mnist-cpu"
    assert main(["classifier", "--dataset", "mnist", "--cpu", "--mixed-precision", "no"]) == 0
    assert chosen["clf"] == "mnist-small"
    assert main(["classifier", "--dataset", "mnist", "--cpu", "--mixed-precision", "bf16"]) == 0
    assert chosen["clf"] == "mnist"
