"""Stopping and continuing: Ctrl-C, checkpoints by wall time, the time budget; every resume stays bitwise exact."""

import shlex
import signal

import pytest
from train_run_helpers import assert_same_tensors

import train.classifier
import train.ddpm
from train.classifier import train_classifier
from train.cli import main
from train.errors import Interrupted
from train.presets import CLASSIFIER_PRESETS, override
from train.sampling import sample

TINY = ["ddpm", "--dataset", "mnist", "--preset", "mnist-tiny", "--cpu", "--checkpoint-every", "100"]


def _ddpm(mnist_dir, out, *extra):
    return [*TINY, "--data-dir", str(mnist_dir), "--limit", "64", "--max-steps", "8", "--output-dir", str(out), *extra]


def _at_step(module, name, monkeypatch, act):
    """Wrap `module.name` (a train_step taking the step first) so that `act(step)` runs before each step."""
    real = getattr(module, name)

    def wrapped(step, *args, **kwargs):
        act(step)
        return real(step, *args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def _minutes_per_step(monkeypatch):
    """run_control's clock reads one minute per optimizer step started."""
    clock = {"now": 0.0}
    monkeypatch.setattr("train.run_control.now", lambda: clock["now"])
    return clock


def _assert_same_checkpoint(a, b, context):
    for name in ("model.safetensors", "state.safetensors"):
        assert_same_tensors(a / name, b / name, context)


def test_ctrl_c_checkpoints_the_step_and_prints_the_exact_resume_command(mnist_dir, tmp_path, capsys, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(_ddpm(mnist_dir, straight)) == 0

    def ctrl_c_at_step_3(step):
        if step == 3:
            signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C: handled between steps

    _at_step(train.ddpm, "train_step", monkeypatch, ctrl_c_at_step_3)
    capsys.readouterr()
    assert main(_ddpm(mnist_dir, stopped)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and (stopped / "checkpoint-4").is_dir() and not (stopped / "model").exists()
    command = err.split("continue exactly with: ")[1].strip()
    assert command.endswith(f"--resume {stopped}")
    monkeypatch.undo()
    assert main(shlex.split(command)[3:]) == 0  # without "python -m train"
    _assert_same_checkpoint(stopped / "checkpoint-8", straight / "checkpoint-8", "after Ctrl-C at step 4")


def test_an_interrupt_before_any_checkpoint_says_so(mnist_dir, tmp_path, capsys, monkeypatch):
    def keyboard_interrupt(step):
        if step == 1:
            raise KeyboardInterrupt  # a second Ctrl-C: no waiting for the step to end

    _at_step(train.ddpm, "train_step", monkeypatch, keyboard_interrupt)
    assert main(_ddpm(mnist_dir, tmp_path / "run")) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted before the first checkpoint: nothing to resume" in err


def test_ddpm_checkpoints_by_wall_time_and_resumes_from_there_exactly(mnist_dir, tmp_path, monkeypatch):
    clock = _minutes_per_step(monkeypatch)
    _at_step(train.ddpm, "train_step", monkeypatch, lambda step: clock.update(now=60.0 * (step + 1)))
    run, resumed = tmp_path / "run", tmp_path / "resumed"
    assert main(_ddpm(mnist_dir, run, "--checkpoint-minutes", "3")) == 0
    # Every 3 minutes (steps 3 and 6) besides the end (8); the newest two are kept.
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    assert main(_ddpm(mnist_dir, resumed, "--resume", str(run / "checkpoint-6"))) == 0
    _assert_same_checkpoint(resumed / "checkpoint-8", run / "checkpoint-8", "after resuming from checkpoint-6")


def test_classifier_checkpoints_within_its_first_epoch_and_resumes_exactly(mnist_dir, tmp_path, monkeypatch):
    preset = override(CLASSIFIER_PRESETS["mnist"], epochs=2, batch_size=32)  # 8 steps per epoch of 256 images
    args = dict(data_dir=mnist_dir, limit=256, test_limit=64, cpu=True, mixed_precision="no")
    straight = train_classifier(preset, tmp_path / "straight", **args)
    run = tmp_path / "run"
    clock = _minutes_per_step(monkeypatch)

    def tick_then_interrupt_at_step_6(step):
        clock["now"] = 60.0 * (step + 1)
        if step == 6:
            raise KeyboardInterrupt

    _at_step(train.classifier, "train_step", monkeypatch, tick_then_interrupt_at_step_6)
    with pytest.raises(Interrupted):
        train_classifier(preset, run, checkpoint_minutes=5, **args)
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-5"]  # by time, before the epoch's end
    monkeypatch.undo()
    resumed = train_classifier(preset, run, resume=run, **args)
    assert resumed["steps"] == straight["steps"] == 16
    assert_same_tensors(run / "classifier.safetensors", tmp_path / "straight" / "classifier.safetensors", "resumed")


def test_a_spent_time_budget_skips_the_preview_grid_and_says_how_to_draw_it(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_ddpm(mnist_dir, run, "--time-budget", "0.001")) == 0
    err = capsys.readouterr().err
    assert f"saved in {run / 'model'}" in err and "skipped" in err
    assert f"python -m train sample --model {run / 'model'} --num 4 --steps 4 --seed 0" in err
    assert (run / "model" / "sha256.json").is_file() and not (run / "samples" / "final.png").exists()


def test_sampling_gives_up_after_one_step_when_the_rest_would_not_fit():
    from diffusers import UNet2DModel

    from train.ddpm import make_noise_scheduler
    from train.presets import DDPM_PRESETS

    preset = DDPM_PRESETS["mnist-tiny"]
    unet, scheduler = UNet2DModel(**preset.unet).eval(), make_noise_scheduler(preset)
    cpu = unet.device
    assert sample(unet, scheduler, 2, 3, 0, cpu, seconds_left=1e-6) is None
    assert sample(unet, scheduler, 2, 3, 0, cpu, seconds_left=60).equal(sample(unet, scheduler, 2, 3, 0, cpu))
