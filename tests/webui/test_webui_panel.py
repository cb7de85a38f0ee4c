"""The panel under both gradio majors (3.41.2 as in A1111 1.10, 4.x as in Forge), settings <-> infotext <-> API
args. Each gradio lives in its own venv (the WebUIs pin different majors); the test runs the panel there in a
subprocess. Venvs: ``NEGGUIDE_GRADIO_PYTHONS`` (``:``-separated python paths), default
``../venvs/gr3/bin/python`` and ``../venvs/gr4/bin/python`` next to the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from negguide_webui import settings as S
from negguide_webui import ui

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _pythons():
    env = os.environ.get("NEGGUIDE_GRADIO_PYTHONS")
    if env:
        return [p for p in env.split(":") if p]
    return [str(ROOT.parent / "venvs" / v / "bin" / "python") for v in ("gr3", "gr4")]


def _need(python):
    if not Path(python).exists():
        if os.environ.get("NEGGUIDE_GRADIO_PYTHONS"):
            pytest.fail(f"NEGGUIDE_GRADIO_PYTHONS names {python}, which does not exist")
        pytest.skip(f"no gradio venv at {python} (.ci/run makes them and sets NEGGUIDE_GRADIO_PYTHONS)")


@pytest.mark.parametrize("python", _pythons(), ids=lambda p: Path(p).parents[1].name)
def test_panel_builds_under_gradio(python):
    _need(python)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    r = subprocess.run(
        [python, str(HERE / "panel_probe.py")], capture_output=True, text=True, env=env, timeout=240, cwd=str(ROOT)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] == len(S.ARG_NAMES)
    assert [
        float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in out["values"]
    ] == S.NegGuideSettings().to_args()
    assert len(set(out["elem_ids"])) == 2 * len(S.ARG_NAMES)  # txt2img and img2img ids never clash
    assert out["fields"][0] == "fn" and set(out["fields"][1:]) == set(S.INFOTEXT_KEYS.values()) - {"NegGuide mode"}
    assert out["paste_mode"] == [S.MODE_DNG, S.MODE_OFF]
    assert "whole steps" in out["status_bad"] and "**" in out["status_bad"]  # the core's own check, no torch
    assert "Ban et al." in out["status_ok"] and "**" not in out["status_ok"]
    assert "acts on no step" in out["status_empty"] and "**" not in out["status_empty"]  # valid, explained
    assert "prior must be strictly between 0 and 1" in out["status_dng_bad"] and "temperature" in out["status_dng_bad"]
    window = ["hr_window", "window_end", "window_start", "window_unit"]  # hires bounds: only with "Own window"
    dng = ["lambda0", "p_max", "offset", "plot", "prior", "temperature", "tracker"]
    adaptive = sorted([*window, "adaptive_signal", "adaptive_threshold"])
    assert out["shown"] == {"off": [], "windowed": window, "dng": sorted(dng), "dns": [], "adaptive": adaptive,
                            "np_lambda": ["negative_scale"]}
    # window group, DNG row, advanced DNG settings, plot checkbox, adaptive row, constant negative scale, after the
    # user switches the mode
    f, t = False, True
    assert out["mode_switch"] == {"off": [f] * 6, "windowed": [t, f, f, f, f, f], "dng": [f, t, t, t, f, f],
                                  "dns": [f] * 6, "adaptive": [t, f, f, f, t, f], "np_lambda": [f] * 5 + [t]}
    assert out["hires_switch"] == {m: [m == S.HR_CUSTOM] * 2 for m in S.HR_MODES}  # hires bounds, own window only
    assert out["dependencies"] >= 2 * len(S.ARG_NAMES)  # every input refreshes the status line
    print(out["gradio"])


@pytest.mark.parametrize("python", _pythons(), ids=lambda p: Path(p).parents[1].name)
def test_panel_renders_in_headless_chromium(python, tmp_path):
    _need(python)
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("NEGGUIDE_REQUIRE_CHROMIUM"):
            pytest.fail("NEGGUIDE_REQUIRE_CHROMIUM is set but no chromium is installed")
        pytest.skip("no chromium (Debian: apt-get install chromium)")
    port = 20000 + os.getpid() % 20000 + (0 if "3" in Path(python).parents[1].name else 1)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "NO_PROXY": "127.0.0.1,localhost"}
    png = tmp_path / "panel.png"
    r = subprocess.run(
        [python, str(HERE / "panel_screenshot.py"), str(png), "dng", str(port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(ROOT),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    im = Image.open(png).convert("L")
    assert im.size == (900, 900)
    lo, hi = im.getextrema()
    assert hi - lo > 100  # not a blank page
    dom = png.with_suffix(".html").read_text()
    assert "Negative guidance" in dom and "Advanced DNG settings" in dom
    for name in S.ARG_NAMES:  # every component made it into the rendered page
        assert f"negguide_txt2img_{name}" in dom, name
    assert "Dynamic negative guidance (DNG)" in dom


def test_api_args_order_is_ui_order():
    """The API's args: the first 14 as they always were, new settings appended (old payloads keep working)."""
    assert S.ARG_NAMES[14:] == ("adaptive_signal", "adaptive_threshold", "negative_scale")
    assert S.ARG_NAMES[:14] == (
        "mode",
        "window_unit",
        "window_start",
        "window_end",
        "hr_window",
        "hr_start",
        "hr_end",
        "lambda0",
        "prior",
        "temperature",
        "offset",
        "p_max",
        "tracker",
        "plot",
    )
    payload_args = [
        "Dynamic negative guidance (DNG)",
        "steps",
        5,
        15,
        "Same as first pass",
        5,
        15,
        7.5,
        0.01,
        0.2,
        0.003,
        0.8,
        "auto",
        True,
    ]
    s = S.NegGuideSettings.from_args(*payload_args)
    assert s.mode_key == "dng" and s.lambda0 == 7.5 and s.plot is True
    assert S.NegGuideSettings.from_args("dng").mode == S.MODE_DNG  # short names from the API
    assert S.NegGuideSettings.from_args(*payload_args[:3]).window_end == 15.0  # trailing defaults
    assert S.NegGuideSettings.from_args(*payload_args).adaptive_signal == S.NegGuideSettings().adaptive_signal
    adaptive = S.NegGuideSettings.from_args("adaptive", *payload_args[1:], "gap", 0.3)
    assert (adaptive.mode, adaptive.adaptive_signal, adaptive.adaptive_threshold) == (S.MODE_ADAPTIVE, "gap", 0.3)
    with pytest.raises(ValueError):
        S.NegGuideSettings.from_args(*payload_args, "gap", 0.3, 1.0, "extra")


def test_a_string_sent_where_the_args_list_goes_is_named_as_such():
    """Forge Neo (and A1111) split "args": "dng" into characters; the refusal says what happened, not 'mode d'."""
    with pytest.raises(ValueError, match="got the characters of the string 'dng'"):
        S.NegGuideSettings.from_args(*"dng")
    assert S.split_string(("d", "n")) and not S.split_string(("dng",)) and not S.split_string(("Off", "steps"))


@pytest.mark.parametrize(
    "s",
    [
        S.NegGuideSettings(
            mode=S.MODE_WINDOWED, window_start=3, window_end=12, hr_window=S.HR_CUSTOM, hr_start=1, hr_end=4
        ),
        S.NegGuideSettings(mode=S.MODE_WINDOWED, window_unit=S.UNIT_FRACTION, window_start=4 / 30, window_end=0.5),
        S.NegGuideSettings(
            mode=S.MODE_DNG, lambda0=7.5, prior=0.02, temperature=0.3, offset=0.004, p_max=0.9, tracker="flow-moment"
        ),
        S.NegGuideSettings(mode=S.MODE_DNS),
        S.NegGuideSettings(mode=S.MODE_ADAPTIVE, window_start=1, window_end=15, adaptive_signal="gap",
                           adaptive_threshold=0.35),
        S.NegGuideSettings(mode=S.MODE_NP_LAMBDA, negative_scale=2.5),
    ],
)
def test_infotext_round_trip(s):
    params = S.infotext_params(s)
    text = ", ".join(f"{k}: {v}" for k, v in params.items())
    from harness.a1111 import parse_infotext, paste_infotext

    back = paste_infotext(parse_infotext(f"a cat\nNegative prompt: dog\nSteps: 20, {text}"))
    for name in S.ARG_NAMES:
        if S.INFOTEXT_KEYS.get(name) in params:
            a, b = getattr(back, name), getattr(s, name)
            assert (abs(a - b) < 1e-5 * max(1, abs(b))) if isinstance(b, float) else a == b, name
    assert paste_infotext({"Steps": "20"}).mode == S.MODE_OFF  # no negguide keys: the panel switches off
    assert S.infotext_params(S.NegGuideSettings()) == {}


def test_status_line_names_tracker_and_cost():
    text = ui.status_text(S.NegGuideSettings(mode=S.MODE_DNG))
    assert "transition likelihood" in text and "Hutchinson" in text and "rows per image" in text
    assert "**" not in text


def test_xyz_axes_write_overrides():
    from negguide_webui import xyz

    class AxisOption:
        def __init__(self, label, type, apply, choices=None):
            self.label, self.type, self.apply, self.choices = label, type, apply, choices

    class Module:
        axis_options = []

    Module.AxisOption = AxisOption
    assert xyz.add_axes(Module) == 7 and xyz.add_axes(Module) == 0
    assert [a.label for a in Module.axis_options][:4] == ["[NegGuide] Mode", "[NegGuide] Window start",
                                                          "[NegGuide] Window end", "[NegGuide] DNG lambda0"]
    p = type("P", (), {})()
    by = {a.label: a for a in Module.axis_options}
    by["[NegGuide] Window start"].apply(p, "7", None)
    by["[NegGuide] DNG lambda0"].apply(p, 2.5, None)
    by["[NegGuide] Adaptive threshold"].apply(p, "0.3", None)
    by["[NegGuide] Adaptive signal"].apply(p, "gap", None)
    assert p.negguide_overrides == {"window_start": 7.0, "lambda0": 2.5, "adaptive_threshold": 0.3,
                                    "adaptive_signal": "gap"}
    assert S.MODE_DNG in by["[NegGuide] Mode"].choices() and S.MODE_ADAPTIVE in by["[NegGuide] Mode"].choices()
    assert by["[NegGuide] Adaptive signal"].choices() == ["alignment", "gap", "none"]


def test_scripts_are_thin_and_py310_clean():
    for f in (ROOT / "scripts").glob("negguide*.py"):
        src = f.read_text()
        assert len(src.splitlines()) < 80, f"{f.name} should stay a thin wrapper"
        compile(src, str(f), "exec")
    assert sys.version_info >= (3, 10)
