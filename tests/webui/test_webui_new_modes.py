"""The adaptive window and constant negative guidance in the WebUI harnesses (A1111 1.10 and every program of the
Forge line): adaptive with signal 'none' is the windowed mode bit for bit, a signal's per-image starts reach the
records and the infotext, constant negative guidance at lambda 0 is the empty negative prompt (to the UNet's batch
rounding: its negative rows still run), and the API args a panel never sends are refused with what happened."""

from __future__ import annotations

import pytest
import torch
from harness import a1111 as H
from harness import forge as F
from harness import forge_forks as FF
from webui_helpers import run

from negguide import negative_starts
from negguide_webui.extension import STARTS_KEY
from negguide_webui.settings import HR_NONE, MODE_ADAPTIVE, MODE_NP_LAMBDA, MODE_WINDOWED, NegGuideSettings

PROGRAMS = list(FF.PROGRAMS)


def adaptive(signal="none", threshold=0.5, **kw):
    return NegGuideSettings(mode=MODE_ADAPTIVE, adaptive_signal=signal, adaptive_threshold=threshold, **kw)


KW = dict(steps=5, batch_size=2, prompt="a red car", negative_prompt="rust", cfg_scale=6.0)


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "Heun", "DDIM"])
@pytest.mark.parametrize("window", [(2, 3), (1, 5)], ids=["partial", "every-step"])
def test_a1111_adaptive_without_a_signal_is_the_windowed_mode_bit_for_bit(a1111, sampler, window):
    start, end = window
    windowed = run(a1111, NegGuideSettings(mode=MODE_WINDOWED, window_start=start, window_end=end),
                   sampler_name=sampler, **KW)[0]
    res, p, script, _ = run(a1111, adaptive(window_start=start, window_end=end), sampler_name=sampler, **KW)
    for a, b in zip(res.latents, windowed.latents, strict=True):
        assert torch.equal(a, b)
    assert "NegGuide mode: adaptive" in res.infotexts[0] and "NegGuide adaptive signal: none" in res.infotexts[0]
    assert f"{STARTS_KEY}: {start}, {start}" in res.infotexts[0]


@pytest.mark.parametrize("name", PROGRAMS)
def test_forge_line_adaptive_without_a_signal_is_the_windowed_mode_bit_for_bit(forge, name):
    kw = dict(program=FF.PROGRAMS[name], sampler_name="Euler a", **KW)
    windowed = run(forge, NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=4), **kw)[0]
    res = run(forge, adaptive(window_start=2, window_end=4), **kw)[0]
    for a, b in zip(res.latents, windowed.latents, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["a1111", "forge"])
def test_a_signal_that_fires_at_once_is_the_window_and_the_records_show_each_start(a1111, backend):
    """alignment >= -1 fires at the window's first step: the images equal the windowed mode's to float32 rounding
    (that step's measuring rows change the UNet batch, and its negative reaches the WebUI's own CFG as the core's
    correction), every image starts there, and the infotext says so."""
    if backend == "forge":
        F.make_forge_model(a1111.sd_model)
    try:
        kw = dict(forge=backend == "forge", sampler_name="Euler a", **KW)
        windowed = run(a1111, NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=4), **kw)[0]
        res, p, script, _ = run(a1111, adaptive("alignment", -1.0, window_start=2, window_end=4), **kw)
        for a, b in zip(res.latents, windowed.latents, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        run_ = script.last_job.passes[0].run
        assert negative_starts(run_.records, 2) == [1, 1]
        measured = [r for r in run_.records if "signal" in r]
        assert [r["step"] for r in measured] == [1] and len(measured[0]["signal"]) == 2
        assert f"{STARTS_KEY}: 2, 2" in res.infotexts[0]
    finally:
        if backend == "forge":
            for attr in ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora"):
                delattr(a1111.sd_model, attr)


def test_a_signal_that_never_fires_is_the_empty_negative_and_says_never(a1111):
    stock = run(a1111, None, sampler_name="Euler a", **{**KW, "negative_prompt": ""})[0]
    res, p, script, _ = run(a1111, adaptive("alignment", 1.0, window_start=1, window_end=5), sampler_name="Euler a",
                            **KW)
    for a, b in zip(res.latents, stock.latents, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # the measuring rows change the UNet's batch only
    assert f"{STARTS_KEY}: never, never" in res.infotexts[0]


def test_adaptive_starts_are_per_pass_with_a_hires_pass(a1111):
    res = run(a1111, adaptive(window_start=2, window_end=3), sampler_name="Euler a", enable_hr=True,
              hr_second_pass_steps=3, **KW)[0]
    assert f"{STARTS_KEY}: \"first pass 2, 2; hires 2, 2\"" in res.infotexts[0] or \
        f"{STARTS_KEY}: first pass 2, 2; hires 2, 2" in res.infotexts[0]


@pytest.mark.parametrize("backend", ["a1111", "forge"])
def test_constant_negative_at_zero_is_the_empty_negative_and_acts_above(a1111, backend):
    if backend == "forge":
        F.make_forge_model(a1111.sd_model)
    try:
        kw = dict(forge=backend == "forge", sampler_name="Euler a", **KW)
        stock = run(a1111, None, **{**kw, "negative_prompt": ""})[0]
        zero = run(a1111, NegGuideSettings(mode=MODE_NP_LAMBDA, negative_scale=0.0), **kw)[0]
        for a, b in zip(zero.latents, stock.latents, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        strong, p, script, _ = run(a1111, NegGuideSettings(mode=MODE_NP_LAMBDA, negative_scale=3.0), **kw)
        assert not torch.allclose(strong.latents[0], stock.latents[0], atol=1e-3)
        assert "NegGuide negative scale: 3" in strong.infotexts[0]
    finally:
        if backend == "forge":
            for attr in ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora"):
                delattr(a1111.sd_model, attr)


def test_a_string_sent_as_args_is_refused_with_what_happened(a1111):
    from webui_helpers import make_script

    script = make_script(a1111)
    p = H.Processing(a1111, steps=3)
    p.scripts = H.ScriptRunner([script], list("dng"))
    calls = a1111.sd_model.calls
    res = H.process_images(p)
    assert res.images == [] and a1111.sd_model.calls == calls  # stopped before sampling
    assert "got the characters of the string 'dng'" in p.extra_generation_params["NegGuide error"]


@pytest.mark.parametrize("settings, warned", [
    (NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=2), True),
    (adaptive(window_start=1, window_end=2), True),
    (NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=2, hr_window=HR_NONE), False),
], ids=["windowed", "adaptive", "windowed-not-in-hires"])
@pytest.mark.parametrize("name", ["forge", "neo", "reforge"])
def test_hires_at_cfg_1_says_that_a_slot_mode_does_nothing_there(forge, name, settings, warned):
    res, p, script, _ = run(forge, settings, program=FF.PROGRAMS[name], steps=3, enable_hr=True,
                            hr_second_pass_steps=2, hr_cfg=1.0, negative_prompt="rust")
    lines = [w for w in script.last_job.warnings if "Hires CFG 1" in w]
    assert (lines == [f"{settings.spec(1.0, True).guidance_mode().label} does nothing in the hires pass at Hires "
                      "CFG 1: the WebUI evaluates no negative prompt there. Set Hires CFG to the CFG scale to keep "
                      "it."]) == warned, lines


def test_forge_without_uncond_warns_for_every_mode_that_loses_its_negative(forge):
    """Forge and Neo drop the uncond before on_cfg_denoiser at CFG 1: the callback sees text_uncond None."""
    from types import SimpleNamespace

    from negguide_webui.extension import Backend
    from negguide_webui.forge import ForgeAdapter
    from negguide_webui.job import Job

    for settings, warned in ((NegGuideSettings(mode=MODE_WINDOWED), True), (adaptive(), True),
                             (NegGuideSettings(mode=MODE_NP_LAMBDA), True),
                             (NegGuideSettings(mode=MODE_WINDOWED, window_start=6, window_end=5), False)):
        p = SimpleNamespace(cfg_scale=1.0, is_hr_pass=False)
        job = Job(settings, lambda is_hr: None, p)
        adapter = ForgeAdapter(job, p, Backend(forge.callbacks, forge.state, None, forge_api=F.API))
        adapter.on_cfg_denoiser(SimpleNamespace(denoiser=SimpleNamespace(p=p), text_uncond=None))
        assert bool([w for w in job.warnings if "at CFG 1" in w]) == warned, (settings.mode, job.warnings)
