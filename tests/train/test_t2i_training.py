"""`python -m train t2i` on the tiny preset: the whole command end to end, and exact resume after a spent time
budget or a Ctrl-C (every exported file bitwise equal to an uninterrupted run's)."""

import json
import signal

import pytest
import torch

import train.t2i.stage
from train.cli import main
from train.model_dir import verify_hashes

# one thread, as the straight run (conftest): float sums differ between thread counts, and these compare bits
TINY = ["t2i", "--preset", "tiny", "--cpu", "--mixed-precision", "no", "--checkpoint-minutes", "0", "--threads", "1"]


def _weights(model_dir):
    from safetensors.torch import load_file

    return {p.relative_to(model_dir).as_posix(): load_file(p) for p in sorted(model_dir.rglob("*.safetensors"))}


def _assert_same_model(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and len(wa) == 4  # unet, vae, text encoder, detector
    for name in wa:
        for key in wa[name]:
            assert torch.equal(wa[name][key], wb[name][key]), f"{name}:{key}"


@pytest.fixture
def straight(tiny_t2i_run):
    return tiny_t2i_run


def test_the_command_assembles_a_hashed_pipeline_folder_with_the_detector(straight):
    model = straight / "model"
    names = {p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()}
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
            "scheduler/scheduler_config.json", "detector/model.safetensors", "detector/config.json", "negguide.json",
            "sha256.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".ckpt", ".pkl"))]
    assert verify_hashes(model)
    assert set(json.loads((model / "sha256.json").read_text())) == names - {"sha256.json"}
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]


def test_the_shipped_detector_is_the_one_adapted_to_decoded_images(straight):
    from safetensors.torch import load_file

    shipped = load_file(straight / "model" / "detector" / "model.safetensors")
    adapted = load_file(straight / "detector-decoded" / "final" / "model.safetensors")
    rendered_only = load_file(straight / "detector" / "final" / "model.safetensors")
    assert all(torch.equal(shipped[k], adapted[k].half() if adapted[k].is_floating_point() else adapted[k])
               for k in adapted)
    assert any(not torch.equal(adapted[k], rendered_only[k]) for k in adapted)  # the fine-tuning moved it
    config = json.loads((straight / "detector-decoded" / "config.json").read_text())
    assert {"init", "vae", "decoded_share"} <= set(config)  # a resume cannot mix parts


def test_a_rerun_reuses_finished_stages(straight, capsys):
    before = (straight / "model" / "sha256.json").read_text()
    assert main([*TINY, "--output-dir", str(straight)]) == 0
    assert (straight / "model" / "sha256.json").read_text() == before


def test_a_spent_time_budget_resumes_exactly(straight, tmp_path, monkeypatch, capsys):
    clock = {"now": 0.0}
    monkeypatch.setattr("train.run_control.now", lambda: clock["now"])
    real = train.t2i.stage.step_generator

    def one_minute_per_step(*args, **kwargs):
        clock["now"] += 60.0
        return real(*args, **kwargs)

    monkeypatch.setattr(train.t2i.stage, "step_generator", one_minute_per_step)
    out = tmp_path / "budget"
    assert main([*TINY, "--output-dir", str(out), "--time-budget", str(6.5 * 60)]) == 0  # stops in the vae stage
    assert "time budget spent during stage vae" in capsys.readouterr().err
    assert (out / "detector" / "stage_done.json").is_file() and not (out / "model").exists()
    monkeypatch.undo()
    assert main([*TINY, "--output-dir", str(out)]) == 0
    _assert_same_model(out / "model", straight / "model")


def test_ctrl_c_stops_with_a_checkpoint_and_the_same_command_continues(straight, tmp_path, monkeypatch, capsys):
    real = train.t2i.stage.step_generator
    steps = {"n": 0}

    def ctrl_c_at_the_second_diffusion_step(*args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 12:  # detector 4, vae 4, detector-decoded 2 steps, then the second diffusion step
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train.t2i.stage, "step_generator", ctrl_c_at_the_second_diffusion_step)
    out = tmp_path / "ctrl-c"
    assert main([*TINY, "--output-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the same command continues" in err
    assert (out / "diffusion" / "checkpoint-2").is_dir()
    monkeypatch.undo()
    assert main([*TINY, "--output-dir", str(out)]) == 0
    _assert_same_model(out / "model", straight / "model")


@pytest.mark.parametrize("argv, message", [
    (["--stages", "vae,colour"], "--stages: colour"),
    (["--stages", "diffusion"], "the diffusion stage needs the vae stage"),
    (["--stages", "detector-decoded"], "the detector-decoded stage needs the detector stage"),
    (["--diffusion-steps", "0"], "diffusion: steps must be >= 1"),
    (["--diffusion-lr", "0"], "diffusion: lr must be in (0, 1]"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_options_are_one_line(argv, message, tmp_path, capsys):
    assert main([*TINY, "--output-dir", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
