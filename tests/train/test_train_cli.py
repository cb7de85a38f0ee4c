"""What a first-time user of `python -m train` meets: bad output paths, bad model folders, sample inputs."""

import json

import pytest
import torch
from diffusers import UNet2DModel

from train.cli import main
from train.ddpm import make_noise_scheduler, save_final_model
from train.presets import DDPM_PRESETS

TINY = ["ddpm", "--dataset", "mnist", "--preset", "mnist-tiny", "--cpu"]


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
