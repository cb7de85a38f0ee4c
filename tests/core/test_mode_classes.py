"""The modes as strategy objects: what each declares (the branches it reads, the negative prompt it needs, whether
it adds to CFG), the spec's validation from the declarations, the settings names without torch, and a new mode
added in one file (here, this one) that runs through every kind of backend without touching the run."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from negguide import (
    DNGConfig,
    Frame,
    GuidanceMode,
    GuidanceRun,
    GuidanceSpec,
    GuidedDenoiser,
    Rows,
    SamplerInfo,
    SettingsError,
    StepWindow,
    register_mode,
)
from negguide.modes import MODE_CLASSES
from negguide.modes.base import EMPTY, NEGATIVE, POSITIVE, Slots

ROOT = Path(__file__).resolve().parents[2]
WINDOW = StepWindow(2, 3)


@pytest.mark.parametrize("spec, branches, needs_negative, adds", [
    (GuidanceSpec("np"), ("positive", "negative"), False, False),
    (GuidanceSpec("np", window=WINDOW), ("positive", "negative", "empty"), True, False),
    (GuidanceSpec("np3"), ("positive", "negative", "empty"), True, True),
    (GuidanceSpec("np3", window=StepWindow.never()), ("positive", "negative", "empty"), True, True),
    (GuidanceSpec("dns", 7.0), ("positive", "empty"), False, False),
    (GuidanceSpec("dns", 7.0, dns_scale=2.0), ("positive", "empty"), False, True),
    (GuidanceSpec("dng"), ("positive", "negative", "empty"), True, True),
    (GuidanceSpec("dng", dng=DNGConfig(lambda0=0.0)), ("positive", "empty"), True, False),
    (GuidanceSpec("sld"), ("positive", "negative", "empty"), True, True),
    (GuidanceSpec("perp_neg"), ("positive", "negative", "empty"), True, True),
    (GuidanceSpec("dng", 1.0, class_removal=True), ("positive", "negative"), True, True),
], ids=lambda v: v.mode if isinstance(v, GuidanceSpec) else None)
def test_each_mode_declares_what_it_reads(spec, branches, needs_negative, adds):
    mode = spec.guidance_mode()
    assert mode.branches() == branches
    assert mode.needs_negative_prompt is needs_negative
    assert mode.adds_to_cfg() is adds


def test_the_spec_validates_from_the_mode_declarations():
    windowed = tuple(name for name, cls in MODE_CLASSES.items() if cls.windowed)  # np, np3, adaptive, ...
    assert {"np", "np3", "adaptive"} <= set(windowed)
    with pytest.raises(SettingsError, match=re.escape(f"a step window applies to the modes {windowed}")):
        GuidanceSpec("dng", window=WINDOW)
    for name in ("dns", "perp_neg"):
        with pytest.raises(SettingsError, match="needs a prompt"):
            GuidanceSpec(name, class_removal=True)
    with pytest.raises(SettingsError, match="mode must be one of"):
        GuidanceSpec("nope")


def test_a_spec_round_trips_through_its_dict():
    for spec in (GuidanceSpec("np", 6.0, window=StepWindow(0.2, 0.5, "fraction")), GuidanceSpec("sld", 3.0),
                 GuidanceSpec("dng", 4.0, dng=DNGConfig(lambda0=2.0, tracker="flow-gated", probe_pairs=3)),
                 GuidanceSpec("perp_neg", 5.0, perp_neg_scale=0.5), GuidanceSpec("dng", 1.0, class_removal=True)):
        assert GuidanceSpec.from_dict(spec.to_dict()) == spec
    dns = GuidanceSpec("dns", 7.0)  # the dict holds the scale DNS resolves to
    assert GuidanceSpec.from_dict(dns.to_dict()).resolved_dns_scale == dns.resolved_dns_scale == 6.0


def test_the_settings_names_load_without_torch():
    """The WebUI panel validates settings in gradio venvs without torch: the front door's settings names, the
    modes' declarations and the panel modules must import there."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from negguide import GuidanceSpec, DNGConfig, StepWindow, describe_tracker, SamplerInfo\n"
            "import negguide_webui.settings, negguide_webui.ui\n"
            "assert GuidanceSpec('dng').guidance_mode().branches() == ('positive', 'negative', 'empty')\n"
            "print(describe_tracker(DNGConfig(), SamplerInfo(False)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "gated Hutchinson" in done.stdout


# --- a mode added in one file -----------------------------------------------------------------------------------
@register_mode
class HalfNegative(GuidanceMode):
    """``E + w (P - (N + E) / 2)``: the negative prompt at half weight beside the empty one (a mode for this test)."""

    name = "half_negative"
    title = "half negative"

    def slots(self, negative_active):
        return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))

    def combine(self, plan, p, predictions):
        return p[EMPTY] + self.spec.cfg_scale * (p[POSITIVE] - 0.5 * (p[NEGATIVE] + p[EMPTY]))


@pytest.fixture(autouse=True, scope="module")
def _forget_the_test_mode():
    yield
    MODE_CLASSES.pop("half_negative", None)


def _model(x, sigma, layout):
    shift = {"positive": 1.0, "negative": -2.0, "empty": 0.5}
    return torch.stack([0.9 * x[r] + shift[b] for r, (b, _) in enumerate(layout)])


def test_a_new_mode_runs_through_a_combining_and_a_cfg_owning_backend():
    spec = GuidanceSpec("half_negative", 4.0)
    assert spec.guidance_mode().branches() == ("positive", "negative", "empty") and spec.to_dict() == {
        "mode": "half_negative", "cfg_scale": 4.0}
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    run = GuidanceRun(spec, 2, Frame.k_diffusion(), SamplerInfo(False), steps=3)
    guided = GuidedDenoiser(run, _model)(x, 2.0)
    p, n, e = 0.9 * x + 1.0, 0.9 * x - 2.0, 0.9 * x + 0.5
    torch.testing.assert_close(guided, e + 4.0 * (p - 0.5 * (n + e)))
    assert run.average_extra_rows() == 1.0 and run.tracker_name() is None
    owner = GuidanceRun(spec, 2, Frame.k_diffusion(), SamplerInfo(False), steps=3)
    plan = owner.plan(x, 2.0)
    preds = {rows: out for rows, out in zip(plan.groups, [p, e, n], strict=True)}
    cfg = e + 4.0 * (p - e)
    torch.testing.assert_close(cfg + owner.correction(plan, preds), guided)
