"""The Script-dropdown workflows (DNP, timing sweep) and the thin ``scripts/`` files, in the A1111 harness."""

from __future__ import annotations

import importlib.util
import sys
import types
from unittest import mock

import pytest
import torch
from harness import a1111 as H
from webui_helpers import make_script

from negguide_webui import workflows as W
from negguide_webui.settings import ARG_NAMES, NegGuideSettings


@pytest.fixture
def webui(tiny_sd):
    w = H.WebUI(tiny_sd)
    yield w
    assert w.callbacks.errors == [] and w.callbacks.count() == 0


def _p(webui, **kw):
    p = H.Processing(webui, **kw)
    p.scripts = H.ScriptRunner([make_script(webui)], NegGuideSettings().to_args())  # panel left Off
    return p


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, p):
        self.calls.append(
            {
                "cfg": p.cfg_scale,
                "neg": p.negative_prompt,
                "ov": dict(p.negguide_overrides or {}) if hasattr(p, "negguide_overrides") else {},
                "seed": p.seed,
            }
        )
        return H.process_images(p)


def test_dnp_automatic(webui):
    rec = Recorder()
    seen = []

    def captioner(img):
        seen.append(img.size)
        return "a blue bicycle"

    p = _p(webui, steps=4, batch_size=2, prompt="a red car", negative_prompt="blurry", cfg_scale=7.0)
    res = W.run_dnp(p, 4.0, W.DNP_AUTO, "", "fake", rec, captioners={"fake": captioner})
    assert len(rec.calls) == 2 and len(seen) == 2
    dns, final = rec.calls
    assert dns["ov"]["mode"] == "Diffusion-negative sample (DNS)" and dns["cfg"] == 5.0  # s = w - 1
    assert final["neg"] == "blurry, a blue bicycle" and final["seed"] == dns["seed"]  # same seed
    assert len(res.images) == 4  # DNS images then final images
    assert "NegGuide mode: dns" in res.infotexts[0] and "DNS scale: 4" in res.infotexts[0]
    assert "DNP caption: a blue bicycle" in res.infotexts[2]


def test_dnp_manual_modes(webui):
    rec = Recorder()
    p = _p(webui, steps=3, prompt="a red car", negative_prompt="")
    res = W.run_dnp(p, 6.0, W.DNP_MANUAL_STOP, "", "fake", rec, captioners={})
    assert len(rec.calls) == 1 and len(res.images) == 1  # stops after the DNS image
    rec2 = Recorder()
    res = W.run_dnp(_p(webui, steps=3, negative_prompt=""), 6.0, W.DNP_MANUAL_CAPTION, "green trees", "x", rec2)
    assert len(rec2.calls) == 1 and rec2.calls[0]["neg"] == "green trees" and len(res.images) == 1
    with pytest.raises(ValueError, match="write the caption"):
        W.run_dnp(_p(webui, steps=3), 6.0, W.DNP_MANUAL_CAPTION, " ", "x", rec2)
    with pytest.raises(ValueError, match="scale must be > 0"):
        W.run_dnp(_p(webui, steps=3), 0, W.DNP_AUTO, "", "x", rec2)


def test_timing_sweep_grid(webui):
    rec = Recorder()
    p = _p(webui, steps=6, prompt="a red car", negative_prompt="a dog")
    images, labels, infos, grid = W.run_sweep(p, "1, 3", "2, 4", True, rec, W.labelled_grid)
    assert labels == [
        "no negative prompt",
        "negative on all steps",
        "steps 1-2 (reverse activation)",
        "steps 1-4 (reverse activation)",
        "steps 3-4",
        "steps 3-6",
    ]
    assert [c["neg"] for c in rec.calls[:2]] == ["", "a dog"]
    assert rec.calls[2]["ov"] == {
        "mode": "Windowed negative prompt",
        "window_unit": "steps",
        "window_start": 1,
        "window_end": 2,
    }
    assert "NegGuide window end: 2" in infos[2]
    w, h = images[0].size
    assert grid.size == (max(2 * w, 200), 20 + 3 * (h + 16))  # references row + two start rows
    assert all(c["seed"] == 1 for c in rec.calls)
    with pytest.raises(ValueError, match="after the last step"):
        W.run_sweep(p, "9", "2", False, rec, W.labelled_grid)
    with pytest.raises(ValueError, match="whole numbers"):
        W.run_sweep(p, "0", "2", False, rec, W.labelled_grid)


def _fake_modules(webui):
    """A minimal ``modules`` package: enough for the thin scripts to import and run in the harness."""
    mods = {}
    m = types.ModuleType("modules")
    scripts = types.ModuleType("modules.scripts")

    class Script:
        def elem_id(self, name):
            return name

    scripts.Script, scripts.AlwaysVisible, scripts.scripts_data = Script, object(), []
    cb = types.ModuleType("modules.script_callbacks")
    cb.before_ui = []
    cb.on_before_ui = cb.before_ui.append
    for name in ("on_cfg_denoiser", "on_cfg_denoised", "on_cfg_after_cfg", "remove_callbacks_for_function"):
        setattr(cb, name, getattr(webui.callbacks, name))
    processing = types.ModuleType("modules.processing")
    processing.process_images = H.process_images
    shared = types.ModuleType("modules.shared")
    shared.state = webui.state
    shared.interrogator = mock.MagicMock()
    shared.interrogator.generate_caption.return_value = "a yellow boat"
    devices = types.ModuleType("modules.devices")
    devices.autocast = mock.MagicMock()
    for name, mod in [
        ("scripts", scripts),
        ("script_callbacks", cb),
        ("processing", processing),
        ("shared", shared),
        ("devices", devices),
    ]:
        setattr(m, name, mod)
        mods[f"modules.{name}"] = mod
    mods["modules"] = m
    mods["gradio"] = mock.MagicMock()
    return mods


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_thin_scripts_in_fake_webui(webui):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "scripts"
    mods = _fake_modules(webui)
    with mock.patch.dict(sys.modules, mods):
        panel = _load(root / "negguide.py")
        dnp = _load(root / "negguide_dnp.py")
        sweep = _load(root / "negguide_sweep.py")
        assert len(mods["modules.script_callbacks"].before_ui) == 1  # XYZ axes registered at load
        sc = panel.NegGuideScript()
        assert sc.title() == "Negative guidance" and sc.show(False) is mods["modules.scripts"].AlwaysVisible
        sc.backend_factory = make_script(webui).backend_factory
        d = dnp.NegGuideDNPScript()
        assert d.title() == "Diffusion-negative prompting" and len(d.ui(False)) == 4
        assert sweep.NegGuideSweepScript().title() == "Negative prompt timing sweep"
        p = H.Processing(webui, steps=3, prompt="a red car", negative_prompt="")
        sc.n_args = len(ARG_NAMES)
        p.scripts = H.ScriptRunner([sc], NegGuideSettings().to_args())
        res = d.run(p, 3.0, W.DNP_AUTO, "", "BLIP (WebUI interrogator)")
        assert len(res.images) == 2 and "DNP caption: a yellow boat" in res.infotexts[1]
        assert torch.isfinite(torch.stack(res.latents)).all()
