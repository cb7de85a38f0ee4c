"""The adaptive window and constant negative guidance through ``python -m negguide.generate``: adaptive with signal
'none' writes the windowed mode's image bit for bit, each PNG names where its image's negative started, and the
options of both modes are checked before loading like every other option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_cli import base_args, model_dir, offline  # noqa: F401 (fixtures)

from negguide import AdaptiveStart
from negguide.generate import NegGuidePipeline
from negguide.generate.cli import build_parser, main


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_adaptive_without_a_signal_writes_the_windowed_image(model_dir, tmp_path, offline):  # noqa: F811
    window = ("--window-start", "2", "--window-end", "3", "--seed", "4", "--num-images", "2")
    assert main(base_args(model_dir, tmp_path / "w", "--mode", "windowed", *window)) == 0
    assert main(base_args(model_dir, tmp_path / "a", "--mode", "adaptive", "--adaptive-signal", "none", *window)) == 0
    for name in ("00000-4.png", "00001-5.png"):
        assert np.array_equal(pixels(tmp_path / "w" / name), pixels(tmp_path / "a" / name))
        params = Image.open(tmp_path / "a" / name).text["parameters"]
        for field in ("NegGuide mode: adaptive window", "NegGuide window: steps 2-3", "NegGuide adaptive signal: none",
                      "NegGuide adaptive start: step 2"):
            assert field in params


def test_adaptive_records_each_images_start_in_its_png(model_dir, tmp_path, offline):  # noqa: F811
    assert main(base_args(model_dir, tmp_path, "--mode", "adaptive", "--adaptive-signal", "alignment",
                          "--adaptive-threshold", "-1", "--window-start", "2", "--window-end", "3",
                          "--seed", "7", "--num-images", "2")) == 0
    image = Image.open(tmp_path / "00001-8.png")
    data = json.loads(image.text["negguide"])
    assert data["guidance"]["adaptive"] == {"signal": "alignment", "threshold": -1.0}
    acting = [r["negative_acting"] for r in data["records"] if "negative_acting" in r]
    assert acting == [True, True]  # this image's own value per window step (threshold -1 fires at once)
    assert isinstance(data["records"][1]["signal"], float)
    assert "NegGuide adaptive start: step 2" in image.text["parameters"]
    assert "NegGuide adaptive threshold: -1" in image.text["parameters"]


def test_adaptive_defaults_are_the_cores(model_dir, tmp_path, offline):  # noqa: F811
    assert main(base_args(model_dir, tmp_path, "--mode", "adaptive", "--seed", "1")) == 0
    data = json.loads(Image.open(tmp_path / "00000-1.png").text["negguide"])
    core = AdaptiveStart()
    assert data["guidance"]["adaptive"] == {"signal": core.signal, "threshold": core.threshold}
    assert data["guidance"]["window"]["start"] == 0.0 and data["guidance"]["window"]["unit"] == "fraction"
    help_text = " ".join(build_parser().format_help().split())
    assert f"default {core.signal}" in help_text and f"default {core.threshold:g}" in help_text


def test_constant_negative_guidance(model_dir, tmp_path, offline):  # noqa: F811
    assert main(base_args(model_dir, tmp_path, "--mode", "np_lambda", "--negative-scale", "2", "--seed", "3")) == 0
    image = Image.open(tmp_path / "00000-3.png")
    assert "NegGuide negative scale: 2" in image.text["parameters"]
    assert json.loads(image.text["negguide"])["guidance"]["negative_scale"] == 2.0


@pytest.mark.parametrize("extra, needle", [
    (["--mode", "windowed", "--adaptive-threshold", "0.2"], "--adaptive-threshold applies to --mode adaptive"),
    (["--mode", "dng", "--negative-scale", "2"], "--negative-scale applies to --mode np_lambda"),
    (["--mode", "adaptive", "--adaptive-threshold", "2"], "the alignment threshold is a cosine in [-1, 1]"),
    (["--mode", "adaptive", "--adaptive-signal", "gap", "--adaptive-threshold", "0"], "gap threshold"),
    (["--mode", "adaptive", "--window-start", "0", "--window-end", "4"], "step windows count from step 1"),
    (["--mode", "np_lambda", "--negative-scale", "-1"], "negative scale (lambda) must be"),
])
def test_bad_options_of_the_new_modes_are_one_line_errors_before_loading(model_dir, tmp_path, offline, capsys,  # noqa: F811
                                                                         monkeypatch, extra, needle):
    monkeypatch.setattr(NegGuidePipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(base_args(model_dir, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
