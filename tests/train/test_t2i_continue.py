"""Training the testbed on a GPU: data drawn in worker processes (bit-identical weights), a diffusion stage warm-
started from a trained model (`--diffusion-init`) and finished on time (`--diffusion-minutes`)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from train.cli import main

# one thread, as the straight run (conftest): float sums differ between thread counts, and these compare bits
TINY = ["t2i", "--preset", "tiny", "--cpu", "--mixed-precision", "no", "--checkpoint-minutes", "0", "--threads", "1"]
UNET = "unet/diffusion_pytorch_model.safetensors"


def _same_files(a, b):
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.safetensors"))
    assert names and names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.safetensors"))
    for name in names:
        wa, wb = load_file(a / name), load_file(b / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def _ready_for_diffusion(straight, out):
    """A run folder whose detector, VAE and adapted-detector stages are the straight run's, diffusion not begun."""
    for part in ("detector", "vae", "detector-decoded", "tokenizer"):
        shutil.copytree(straight / part, out / part, ignore=shutil.ignore_patterns("checkpoint-*"))
    return out


def test_data_workers_give_the_same_weights(tiny_t2i_run, tmp_path):
    out = tmp_path / "workers"
    assert main([*TINY, "--output-dir", str(out), "--data-workers", "2"]) == 0
    _same_files(out / "model", tiny_t2i_run / "model")


def test_a_warm_start_begins_at_the_given_model(tiny_t2i_run, tmp_path):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "warm")
    init = shutil.copytree(tiny_t2i_run / "model", tmp_path / "init")  # moved far from anything trained
    g = torch.Generator().manual_seed(0)
    save_file({k: v + torch.randn(v.shape, generator=g).to(v.dtype) for k, v in load_file(init / UNET).items()},
              init / UNET)
    assert main([*TINY, "--output-dir", str(out), "--stages", "diffusion", "--diffusion-init", str(init),
                 "--diffusion-steps", "1"]) == 0
    start, after = load_file(init / UNET), load_file(out / "model" / UNET)
    # one AdamW step (LR 1e-3) from the given weights; a fresh start would be about 1 away from them
    assert max((after[k].float() - start[k].float()).abs().max().item() for k in start) < 3e-3
    config = json.loads((out / "diffusion" / "config.json").read_text())
    assert len(config["init"]) == 16  # a resume with another init refuses the checkpoint


def test_a_warm_start_needs_the_runs_vae(tiny_t2i_run, tmp_path, capsys):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "other-vae")
    weights = out / "vae" / "final" / "diffusion_pytorch_model.safetensors"
    save_file({k: v + 1 for k, v in load_file(weights).items()}, weights)
    argv = [*TINY, "--output-dir", str(out), "--stages", "diffusion", "--diffusion-steps", "1"]
    assert main([*argv, "--diffusion-init", str(tiny_t2i_run / "model")]) == 2
    assert "its VAE is not this run's" in capsys.readouterr().err
    assert main([*argv, "--diffusion-init", str(tiny_t2i_run / "vae")]) == 2
    err = capsys.readouterr().err
    assert "not a testbed model folder (missing unet/" in err and "Traceback" not in err


def test_the_diffusion_stage_finishes_on_time(tiny_t2i_run, tmp_path, capsys):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "on-time")
    assert main([*TINY, "--output-dir", str(out), "--stages", "diffusion", "--diffusion-steps", "1000",
                 "--diffusion-minutes", "1e-6"]) == 0
    assert "finished on time at step 1" in capsys.readouterr().err
    assert json.loads((out / "diffusion" / "stage_done.json").read_text())["steps"] == 1
    assert (out / "model" / "sha256.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--diffusion-minutes", "0"], "--diffusion-minutes must be > 0"),
    (["--diffusion-init", "/nonexistent"], "--diffusion-init /nonexistent: no such folder"),
    (["--data-workers", "-1"], "--data-workers must be >= 0"),
])
def test_bad_options_are_one_line(argv, message, tmp_path, capsys):
    assert main([*TINY, "--output-dir", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_export_of_the_last_checkpoint_is_the_finished_model(tiny_t2i_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["t2i-export", "--run", str(tiny_t2i_run), "--out", str(out)]) == 0
    assert "diffusion step 4, EMA weights" in capsys.readouterr().err
    _same_files(out, tiny_t2i_run / "model")
    assert (out / "sha256.json").read_text() == (tiny_t2i_run / "model" / "sha256.json").read_text()


def test_export_needs_a_run_with_a_diffusion_stage(tiny_t2i_run, tmp_path, capsys):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "no-diffusion")
    assert main(["t2i-export", "--run", str(out), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "has no diffusion stage" in err and "Traceback" not in err


def test_the_cooldown_decays_the_constant_lr_linearly_to_zero():
    from train.t2i.presets import StageSchedule
    from train.t2i.stage import _lr_factor

    schedule = StageSchedule(steps=10, batch_size=1, lr=1.0, warmup_steps=2, cooldown_steps=4)
    assert [_lr_factor(schedule, "constant")(s) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]


def test_a_run_branches_into_a_cooldown_from_a_copied_checkpoint(tiny_t2i_run, tmp_path, capsys):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "cooldown")
    (out / "diffusion").mkdir()
    shutil.copytree(tiny_t2i_run / "diffusion" / "checkpoint-2", out / "diffusion" / "checkpoint-2")
    argv = [*TINY, "--output-dir", str(out), "--stages", "diffusion", "--diffusion-steps", "4"]
    assert main([*argv, "--diffusion-cooldown", "5"]) == 2
    assert "cool-down steps must be in [0, steps = 4], got 5" in capsys.readouterr().err
    assert main([*argv, "--diffusion-cooldown", "2"]) == 0  # resumed at step 2: the LR halves, then stops
    assert json.loads((out / "diffusion" / "stage_done.json").read_text())["cooldown_steps"] == 2
    straight, cooled = load_file(tiny_t2i_run / "model" / UNET), load_file(out / "model" / UNET)
    assert any(not torch.equal(straight[k], cooled[k]) for k in straight)


def test_a_run_cut_below_its_newest_checkpoint_is_refused(tiny_t2i_run, tmp_path, capsys):
    out = _ready_for_diffusion(tiny_t2i_run, tmp_path / "cut")
    (out / "diffusion").mkdir()
    shutil.copytree(tiny_t2i_run / "diffusion" / "checkpoint-2", out / "diffusion" / "checkpoint-2")
    assert main([*TINY, "--output-dir", str(out), "--stages", "diffusion", "--diffusion-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "past the 1 steps asked for: give --diffusion-steps >= 2" in err and "Traceback" not in err
    assert not (out / "diffusion" / "stage_done.json").exists()
