"""``python -m negguide.generate`` end to end on a tiny pipeline saved with save_pretrained and loaded back by path,
offline; PNG metadata; and one-line errors (exit status 2, no traceback, nothing loaded) for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT

from negguide.generate import NegGuidePipeline
from negguide.generate.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(sd_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd")
    sd_pipe.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def fake_model(tmp_path, cls, scheduler="EulerDiscreteScheduler"):
    """A folder with only a model_index.json: enough for every check made before loading."""
    folder = tmp_path / f"{cls}-{scheduler}"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, "scheduler": ["diffusers", scheduler]}))
    return str(folder)


def single_file(path):
    path.write_bytes(b"")
    return str(path)


def base_args(model, out, *extra):
    return ["--model", model, "--prompt", PROMPT, "--negative", NEGATIVE, "--steps", "3", "--width", "16",
            "--height", "16", "--device", "cpu", "--out", str(out), "--quiet", *extra]


def test_cli_dng_end_to_end_with_metadata_and_plot(model_dir, tmp_path, offline, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    rc = main(base_args(model_dir, out, "--mode", "dng", "--seed", "5", "--num-images", "3", "--batch-size", "2",
                        "--lambda0", "3", "--scheduler", "euler_a", "--plot"))
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00000-5.png", "00001-6.png", "00002-7.png", "guidance-00000.png", "guidance-00002.png"]
    assert capsys.readouterr().out.split() == [str(out / n) for n in
                                               ("00000-5.png", "00001-6.png", "guidance-00000.png", "00002-7.png",
                                                "guidance-00002.png")]
    from PIL import Image

    image = Image.open(out / "00001-6.png")
    params = image.text["parameters"].splitlines()
    assert params[0] == PROMPT and params[1] == f"Negative prompt: {NEGATIVE}"
    for field in ("Steps: 3", "Sampler: Euler a", "CFG scale: 7.5", "Seed: 6", "Size: 16x16", "NegGuide mode: DNG",
                  "NegGuide lambda0: 3", "NegGuide tracker: transition"):
        assert field in params[2]
    data = json.loads(image.text["negguide"])
    assert data["seed"] == 6 and data["guidance"]["dng"]["lambda0"] == 3.0 and data["scheduler"] == "euler_a"
    assert len(data["records"]) == 3 and all(isinstance(r["p"], float) for r in data["records"])

    # the same image through the Python API: a single run with seed 6 (per-image seeds)
    api = NegGuidePipeline.from_pretrained(model_dir, scheduler="euler_a")
    api.set_progress_bar_config(disable=True)
    ref = api(PROMPT, NEGATIVE, mode="dng", dng={"lambda0": 3.0}, num_inference_steps=3, height=16, width=16,
              generator=[torch.Generator().manual_seed(6)])
    diff = np.abs(np.asarray(image, dtype=int) - np.asarray(ref.images[0], dtype=int))
    assert diff.max() <= 1  # batch of 2 vs a single run: float32 kernels may flip one 8-bit rounding
    assert data["records"][-1]["p"] == pytest.approx(ref.records[-1]["p"][0], rel=1e-3)


def test_cli_windowed_and_dnp(model_dir, tmp_path, offline, monkeypatch):
    out = tmp_path / "w"
    assert main(base_args(model_dir, out, "--mode", "windowed", "--window-start", "2", "--window-end", "3",
                          "--seed", "1")) == 0
    from PIL import Image

    data = json.loads(Image.open(out / "00000-1.png").text["negguide"])
    assert [r["negative_active"] for r in data["records"]] == [False, True, True]
    assert "NegGuide window: steps 2-3" in Image.open(out / "00000-1.png").text["parameters"]

    import negguide.generate.captioner as C

    monkeypatch.setattr(C, "load_captioner", lambda name, **kw: (lambda image: f"caption by {name}"))
    import negguide.generate.pipeline as P

    monkeypatch.setattr(P, "load_captioner", C.load_captioner)
    import negguide.generate.cli as cli

    monkeypatch.setattr(cli, "captioner_problem", lambda name: None)  # the stand-in captioner needs no hub
    out = tmp_path / "dnp"
    assert main(base_args(model_dir, out, "--mode", "dnp", "--captioner", "my/captioner", "--seed", "2")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000-2-dns.png", "00000-2.png"]
    final = Image.open(out / "00000-2.png")
    assert "Negative prompt: caption by my/captioner" in final.text["parameters"]
    assert json.loads(final.text["negguide"])["dnp"]["captioner"] == "my/captioner"
    assert "NegGuide mode: DNS" in Image.open(out / "00000-2-dns.png").text["parameters"]


def test_cli_as_a_module_in_a_fresh_process(model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "negguide.generate", *base_args(model_dir, tmp_path / "o", "--mode",
                         "dns", "--seed", "3")], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(tmp_path / "o" / "00000-3.png")
    bad = subprocess.run([sys.executable, "-m", "negguide.generate", *base_args(model_dir, tmp_path / "b", "--mode",
                          "dng", "--lambda0", "-2")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: lambda0 must be in [0, 1000], got -2"


@pytest.mark.parametrize("extra, needle", [
    (["--mode", "dng", "--lambda0", "-1", "--prior", "3"], "lambda0 must be in [0, 1000]"),
    (["--mode", "dns", "--lambda0", "2"], "--lambda0 applies to --mode dng, not dns"),
    (["--mode", "off", "--window-start", "2", "--window-end", "4"], "--window-start applies to --mode"),
    (["--mode", "windowed", "--window-start", "2"], "needs both --window-start and --window-end"),
    (["--mode", "windowed", "--window-start", "2.5", "--window-end", "4"], "whole steps"),
    (["--mode", "off", "--plot"], "--plot draws DNG's p(t) and lambda(t)"),
    (["--mode", "dng", "--lambda0", "0", "--plot"], "--plot needs lambda0 > 0"),
    (["--scheduler", "flow_euler"], "scheduler flow_euler does not fit a SD model"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--width", "20"], "--width must be a positive multiple of 8"),
    (["--cfg", "1000"], "CFG scale must be a number in [0, 100]"),
])
def test_bad_settings_are_one_line_errors_before_loading(model_dir, tmp_path, offline, capsys, monkeypatch, extra,
                                                         needle):
    monkeypatch.setattr(NegGuidePipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    args = base_args(model_dir, tmp_path / "o", *extra)
    args[args.index("--steps") + 1] = extra[extra.index("--steps") + 1] if "--steps" in extra else "3"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.splitlines())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("model, needle", [
    (lambda tmp: str(tmp / "nowhere"), "model folder"),
    (lambda tmp: str(tmp), "has no model_index.json"),
    (lambda tmp: fake_model(tmp, "StableDiffusionImg2ImgPipeline"), "is a StableDiffusionImg2ImgPipeline"),
    (lambda tmp: single_file(tmp / "m.safetensors"), "single file"),
])
def test_bad_models_are_one_line_errors(tmp_path, offline, capsys, model, needle):
    assert main(base_args(model(tmp_path), tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.splitlines()) == 1


def test_modes_that_make_no_sense_for_the_model_are_refused_before_loading(tmp_path, offline, capsys):
    sd3 = fake_model(tmp_path, "StableDiffusion3Pipeline", "FlowMatchEulerDiscreteScheduler")
    assert main(base_args(sd3, tmp_path / "o", "--mode", "sld")) == 2
    assert "no meaning for a rectified-flow model" in capsys.readouterr().err
    assert main(base_args(sd3, tmp_path / "o", "--scheduler", "euler_a")) == 2
    assert "use one of: flow_euler, flow_heun" in capsys.readouterr().err
    kdpm = fake_model(tmp_path, "StableDiffusionPipeline", "KDPM2DiscreteScheduler")
    assert main(base_args(kdpm, tmp_path / "o")) == 2
    assert "the model's scheduler KDPM2DiscreteScheduler is not supported; pass --scheduler" in capsys.readouterr().err


def test_modes_that_use_a_negative_prompt_need_one(model_dir, tmp_path, offline, capsys):
    args = base_args(model_dir, tmp_path / "o", "--mode", "dng")
    del args[args.index("--negative"):args.index("--negative") + 2]
    assert main(args) == 2
    assert "--mode dng guides away from a negative prompt: pass --negative" in capsys.readouterr().err


def test_unknown_scheduler_and_mode_are_argparse_errors(model_dir, tmp_path, capsys):
    for extra in (["--scheduler", "dpm_fast"], ["--mode", "magic"]):
        with pytest.raises(SystemExit) as exit_:
            main(base_args(model_dir, tmp_path, *extra))
        assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
