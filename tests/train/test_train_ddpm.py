"""`python -m train ddpm` end to end on a tiny slice of MNIST, bad input, and exact resume after SIGKILL."""

import json
import os
import subprocess
import sys

import pytest
from train_run_helpers import REPO, assert_no_pickles, assert_same_tensors, kill_once_exists, last_checkpoint_step

from train.cli import main

TINY = ["ddpm", "--dataset", "mnist", "--preset", "mnist-tiny", "--cpu"]


def test_smoke_single_class_model_dir_and_grid(mnist_dir, tmp_path, capsys):
    from diffusers import DDPMScheduler, UNet2DModel

    out = tmp_path / "run"
    args = ["--data-dir", str(mnist_dir), "--only-class", "0", "--limit", "32", "--max-steps", "4"]
    assert main([*TINY, *args, "--checkpoint-every", "2", "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["only_class"] == 0 and config["num_images"] == 32
    unet = UNet2DModel.from_pretrained(out / "model")
    scheduler = DDPMScheduler.from_pretrained(out / "model")
    assert unet.config.sample_size == 28 and scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.beta_start == 1e-4 and scheduler.config.beta_end == 0.02
    assert (out / "samples" / "final.png").stat().st_size > 0
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4"]
    assert_no_pickles(out)
    # Same output dir again without --resume: refused rather than overwritten.
    assert main([*TINY, *args, "--output-dir", str(out)]) == 2
    # Resuming with a different learning rate or class: refused, naming the difference.
    assert main([*TINY, *args, "--max-steps", "6", "--lr", "0.01", "--resume", str(out)]) == 2
    assert "lr: checkpoint has 0.001, this run has 0.01" in capsys.readouterr().err
    args[args.index("--only-class") + 1] = "1"
    assert main([*TINY, *args, "--max-steps", "6", "--resume", str(out)]) == 2
    assert "only_class" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--only-class", "12"], "classes are 0..9"),
        (["--lr", "-1"], "--lr must be in"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--ema-decay", "1.5"], "--ema-decay"),
        (["--data-dir", "/nonexistent"], "--download"),
        (["--resume", "/nonexistent/run"], "no such checkpoint"),
        (["--preset", "cifar10"], "is for cifar10"),
    ],
)
def test_bad_input_exits_2_with_a_message(extra, message, capsys, tmp_path):
    assert main([*TINY, "--output-dir", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "log.jsonl").exists()  # refused before training started


def test_unknown_dataset_exits_2(capsys):
    assert main(["ddpm", "--dataset", "svhn"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def _train_cmd(mnist_dir, out, steps):
    data = ["--data-dir", str(mnist_dir), "--limit", "128", "--output-dir", str(out)]
    schedule = ["--max-steps", str(steps), "--checkpoint-every", "5", "--sample-every", "0"]
    return [sys.executable, "-m", "train", *TINY, *data, *schedule]


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(mnist_dir, tmp_path):
    steps = 40
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")  # same thread count in every run
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    kill_once_exists(_train_cmd(mnist_dir, killed, steps), env, killed / "checkpoint-5")
    last = last_checkpoint_step(killed)
    assert last < steps
    # Resume the killed run and run an uninterrupted one side by side.
    resumed = subprocess.Popen([*_train_cmd(mnist_dir, killed, steps), "--resume", str(killed)], cwd=REPO, env=env)
    subprocess.run(_train_cmd(mnist_dir, straight, steps), cwd=REPO, env=env, check=True)
    assert resumed.wait() == 0
    for name in ("model.safetensors", "state.safetensors"):
        assert_same_tensors(
            killed / f"checkpoint-{steps}" / name, straight / f"checkpoint-{steps}" / name, f"after resume from {last}"
        )
    assert_no_pickles(killed)
