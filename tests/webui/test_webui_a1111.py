"""The extension inside the A1111-1.10-mirroring harness, driven by a tiny random SD model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from harness import a1111 as H
from harness.tinysd import marker_sign
from webui_helpers import encode, run, same

from negguide import guidance as G
from negguide.configs import ProbeGate
from negguide.windows import StepWindow
from negguide_webui.settings import (
    HR_CUSTOM,
    MODE_DNG,
    MODE_DNS,
    MODE_WINDOWED,
    UNIT_FRACTION,
    NegGuideSettings,
)


@pytest.fixture
def webui(a1111):
    return a1111


def _uncond_is(entry, target):
    u = entry["uncond"]
    return same(u, target.expand(u.shape[0], *target.shape[1:]), 1e-6) if u.shape[1] == target.shape[1] else False


# --- windowed negative ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DDIM", "Euler a"])
def test_window_exact_steps_then_empty(webui, sampler):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=3, window_end=5)
    res, p, script, spy = run(webui, s, spy=True, steps=8, sampler_name=sampler, batch_size=2, negative_prompt="a dog")
    neg, empty = encode(m, "a dog"), encode(m, "")
    per_step = {}
    for e in spy.den:
        step = e["call"] * e["steps"] // e["total"]
        is_neg, is_empty = _uncond_is(e, neg), _uncond_is(e, empty)
        assert is_neg != is_empty
        assert e["uncond"].shape[0] == 2 and e["x"].shape[0] == 4  # row count unchanged
        per_step.setdefault(step, set()).add(is_neg)
    assert all(len(v) == 1 for v in per_step.values()), "both evaluations of a step must agree"
    active = [s for s, v in sorted(per_step.items()) if v == {True}]
    assert active == [2, 3, 4]  # 1-based steps 3..5
    assert len(per_step) == 8
    if sampler == "Heun":
        assert len(spy.den) == 15


def test_window_as_fraction_and_paper_default(webui):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_WINDOWED, window_unit=UNIT_FRACTION, window_start=4 / 30, window_end=15 / 30)
    res, p, script, spy = run(webui, s, spy=True, steps=30, negative_prompt="a dog")
    neg = encode(m, "a dog")
    active = [i for i, e in enumerate(spy.den) if _uncond_is(e, neg)]
    assert active == list(range(4, 15))  # steps 5-15 of 30, as in Ban et al.
    assert StepWindow.paper_default().mask(30) == [i in active for i in range(30)]


def test_window_img2img_runs_only_its_steps(webui):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=5, window_end=15)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    res, p, script, spy = run(
        webui, s, spy=True, steps=20, denoising_strength=0.5, init_latent=init, negative_prompt="a dog"
    )
    neg = encode(m, "a dog")
    assert len(spy.den) == 11  # t_enc + 1 steps of a 20-step schedule
    active = [i for i, e in enumerate(spy.den) if _uncond_is(e, neg)]
    # the pass is the tail of the 20-step schedule: full-schedule steps 10..20; the window 5-15 covers 10..15
    assert active == list(range(0, 6))


# --- DNS --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_dns_swaps_prompts_and_matches_eq19(webui, sampler):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_DNS)
    res, p, script, spy = run(
        webui, s, spy=True, steps=4, sampler_name=sampler, batch_size=2, prompt="a red car", cfg_scale=5.0
    )
    pos, empty = encode(m, "a red car"), encode(m, "")
    for e, out in zip(spy.den, spy.after, strict=True):
        assert same(e["cond"], empty.expand(2, -1, -1)) and same(e["uncond"], pos.expand(2, -1, -1))
        assert e["x"].shape[0] == 4
        # the combined prediction is Desai Eq. 19 with s = w - 1, from separate UNet calls
        d = e["denoiser"]
        x, sig = e["x"][:2], e["sigma"][:2]
        ic = e["image_cond"][:2]
        d_empty = d.inner_model(x, sig, cond={"c_crossattn": [empty.expand(2, -1, -1)], "c_concat": [ic]})
        d_pos = d.inner_model(x, sig, cond={"c_crossattn": [pos.expand(2, -1, -1)], "c_concat": [ic]})
        ref = G.diffusion_negative(d_empty, d_pos, 5.0 - 1.0)
        assert torch.allclose(out, ref, atol=1e-4)


# --- DNG --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler, tracker", [("Euler", "auto"), ("Euler a", "auto"), ("DDIM", "auto"),
                                             ("Heun", "auto"), ("Euler", "flow-hutchinson")])
def test_dng_injected_rows_equal_separate_calls(webui, sampler, tracker):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_DNG, lambda0=3.0, tracker=tracker)
    res, p, script, spy = run(
        webui,
        s,
        spy=True,
        steps=5,
        sampler_name=sampler,
        batch_size=2,
        prompt="a red car",
        negative_prompt="rust",
        cfg_scale=6.0,
    )
    pos, neg, empty = encode(m, "a red car"), encode(m, "rust"), encode(m, "")
    job = script.last_job
    guidance = job.passes[0].run
    expected = tracker if tracker != "auto" else ("transition" if sampler == "Euler a" else "flow-gated")
    assert guidance.tracker_name() == expected
    assert len(guidance.mode.controller.records) == 5  # one posterior update per step, also for Heun
    lams = {r["step"]: torch.tensor(r["lambda"]) for r in guidance.mode.controller.records}
    # the gated tracker: only some steps
    probe_rows = {r["step"]: r["probe_rows"] for r in guidance.mode.controller.records}
    for e, x_out, out in zip(spy.den, spy.dend, spy.after, strict=True):
        b = 2
        step = e["call"] * e["steps"] // e["total"]
        first = e["call"] == 0 or (e["call"] - 1) * e["steps"] // e["total"] != step
        assert x_out.shape[0] == 2 + b + (probe_rows[step] if first else 0) + b  # one call: cond, neg, probes, empty
        x, sig, ic = e["x"][:2], e["sigma"][:2], e["image_cond"][:2]
        d = e["denoiser"]

        def call(c, x=x, sig=sig, ic=ic, d=d):
            return d.inner_model(x, sig, cond={"c_crossattn": [c.expand(2, -1, -1)], "c_concat": [ic]})

        d_pos, d_neg, d_empty = call(pos), call(neg), call(empty)
        assert torch.allclose(x_out[:2], d_pos, atol=1e-5)
        assert torch.allclose(x_out[2:4], d_neg, atol=1e-5)
        assert torch.allclose(x_out[-2:], d_empty, atol=1e-5)
        ref = G.dng_text(d_empty, d_pos, d_neg, 6.0, lams[step])
        assert torch.allclose(out, ref, atol=1e-4)
    assert "NegGuide tracker" in res.infotexts[0]


@pytest.mark.parametrize("sampler, tracker", [("Euler a", "transition"), ("Euler", "flow-hutchinson")])
def test_dng_posteriors_are_per_image(tiny_sd64, sampler, tracker):
    """Image i of a batch == a single run of its seed, the Hutchinson probes included (seeded per image). The
    UNet computes in float64: in float32 its outputs differ by ~1e-6 between batch sizes, which the probes'
    finite difference amplifies to ~1e-3 of p."""
    webui = H.WebUI(tiny_sd64)
    s = NegGuideSettings(mode=MODE_DNG, tracker=tracker, lambda0=2.0, temperature=1.0)
    kw = dict(steps=6, sampler_name=sampler, prompt="a red car", cfg_scale=5.0)
    both = run(webui, s, batch_size=2, negative_prompt=["rust", "a red car"], **kw)[2].last_job
    p_both = torch.tensor([r["p"] for r in both.passes[0].run.mode.controller.records])
    for i, (neg, seed) in enumerate([("rust", 1), ("a red car", 2)]):
        alone = run(webui, s, batch_size=1, negative_prompt=neg, seed=seed, **kw)[2].last_job
        p_alone = torch.tensor([r["p"] for r in alone.passes[0].run.mode.controller.records])[:, 0]
        assert torch.allclose(p_both[:, i], p_alone, rtol=1e-9, atol=0), (i, p_both[:, i], p_alone)
    assert not torch.allclose(p_both[:, 0], p_both[:, 1])
    assert webui.callbacks.errors == [] and webui.callbacks.count() == 0


def test_dng_fresh_state_per_batch_iteration_and_hires_pass(webui):
    s = NegGuideSettings(mode=MODE_DNG, plot=True)
    res, p, script, _ = run(webui, s, steps=4, n_iter=2, enable_hr=True, hr_second_pass_steps=3, denoising_strength=0.6)
    passes = script.last_job.passes
    assert [(sp.batch_number, sp.is_hr) for sp in passes] == [(0, False), (0, True), (1, False), (1, True)]
    assert [len(sp.run.mode.controller.records) for sp in passes] == [4, 3, 4, 3]
    assert len({id(sp.run) for sp in passes}) == 4
    assert len(res.images) == 2 + 1  # two images and the lambda/p plot
    assert res.images[-1].size[0] == 640


def test_hires_pass_gets_its_own_window(webui):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=3, hr_window=HR_CUSTOM, hr_start=1, hr_end=1)
    res, p, script, spy = run(
        webui, s, spy=True, steps=5, enable_hr=True, hr_second_pass_steps=4, negative_prompt="a dog"
    )
    first = [e for e in spy.den if e["x"].shape[-1] == 8]
    hires = [e for e in spy.den if e["x"].shape[-1] == 16]
    neg = encode(m, "a dog")
    neg_hr = encode(m, "a dog", 128, 128)
    assert [_uncond_is(e, neg) for e in first] == [False, True, True, False, False]
    assert [_uncond_is(e, neg_hr) for e in hires] == [True, False, False, False]


# --- conditioning shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [MODE_WINDOWED, MODE_DNS, MODE_DNG])
def test_controlnet_marker_rows_kept(webui, mode):
    m = webui.sd_model
    s = NegGuideSettings(mode=mode, window_start=1, window_end=2)
    run(webui, s, steps=3, batch_size=2, controlnet_markers=True, sampler_name="Euler a")
    assert m.marker_log, "no UNet call"
    for signs in m.marker_log:  # the tiny UNet raises if some rows lost their marker
        assert bool((signs != 0).all())
        assert signs[:2].tolist() == [1, 1] and signs[-2:].tolist() == [-1, -1]
        if mode == MODE_DNG:
            assert signs[2:4].tolist() == [-1, -1]  # the injected negative rows play the uncond role


@pytest.mark.parametrize("mode", [MODE_WINDOWED, MODE_DNS, MODE_DNG])
@pytest.mark.parametrize("pad", ["none", "pad", "v0", "unbatched"])
def test_long_prompt_token_mismatch(webui, mode, pad):
    webui.opts = H.Opts(
        pad_cond_uncond=pad == "pad", pad_cond_uncond_v0=pad == "v0", batch_cond_uncond=pad != "unbatched"
    )
    long = ", ".join(["a very detailed red sports car"] * 14)  # > 75 tokens: cond [B, 154, D]
    s = NegGuideSettings(mode=mode, window_start=1, window_end=2)
    res, p, script, spy = run(webui, s, spy=True, steps=3, batch_size=2, prompt=long)
    assert spy.den[0]["cond"].shape[1] in (77, 154)
    assert len(res.images) == 2 and all(torch.isfinite(t).all() for t in res.latents)


def test_dng_long_negative_pads_cond_rows(webui):
    long = ", ".join(["blurry, ugly, low quality, watermark"] * 12)
    s = NegGuideSettings(mode=MODE_DNG)
    res, p, script, spy = run(webui, s, spy=True, steps=3, negative_prompt=long)
    assert spy.den[0]["cond"].shape[1] == 154 and all(torch.isfinite(t).all() for t in res.latents)


def test_sdxl_dict_conditionings(tiny_sdxl):
    w = H.WebUI(tiny_sdxl)
    for mode in (MODE_WINDOWED, MODE_DNS, MODE_DNG):
        s = NegGuideSettings(mode=mode, window_start=1, window_end=2)
        res, p, script, spy = run(w, s, spy=True, steps=3, batch_size=2, enable_hr=True, hr_second_pass_steps=2)
        assert w.callbacks.errors == []
        for e in spy.den:
            assert isinstance(e["cond"], dict) and isinstance(e["uncond"], dict)
            assert set(e["uncond"]) == {"crossattn", "vector"}
        job = script.last_job
        assert not same(job.empty(False)["vector"], job.empty(True)["vector"])  # hires size in the vector
        hr_unconds = [e["uncond"]["vector"] for e in spy.den if e["x"].shape[-1] == 16]
        if mode == MODE_DNG:
            assert all(same(v, job.empty(True)["vector"].expand(2, -1)) for v in hr_unconds)
    assert w.callbacks.count() == 0


def test_prompt_editing_and_and_prompts_with_dng(webui):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-moment")
    res, p, script, spy = run(
        webui,
        s,
        spy=True,
        steps=4,
        batch_size=2,
        prompt=["[a cat:a dog:1]", "a cat AND a hat"],
        negative_prompt="rust",
    )
    e0 = spy.den[0]
    assert e0["cond"].shape[0] == 3 + 2  # three positive rows (AND) + two injected negatives
    cat, dog = encode(m, "a cat"), encode(m, "a dog")
    assert same(e0["cond"][0:1], cat) and same(spy.den[2]["cond"][0:1], dog)  # edited after step 1
    assert len(script.last_job.passes[0].run.mode.controller.records) == 4


def test_ngms_skipped_uncond_steps(webui):
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-hutchinson")  # a probe pair at every step
    res, p, script, spy = run(webui, s, spy=True, steps=6, s_min_uncond=100.0)
    assert any(x.shape[0] == 1 + 1 + 2 * 1 + 1 for x in spy.dend)
    assert all(torch.isfinite(t).all() for t in res.latents)


# --- job lifecycle ----------------------------------------------------------------------------------------


def test_interrupt_then_next_job_is_clean(webui):
    s = NegGuideSettings(mode=MODE_DNG)

    class Interrupter:
        n_args = 0

        def process(self, p):
            webui.callbacks.on_cfg_after_cfg(self.after)

        def after(self, params):
            if params.sampling_step >= 2:
                webui.state.interrupted = True

        def postprocess(self, p, processed):
            webui.callbacks.remove_callbacks_for_function(self.after)

    from webui_helpers import make_script

    script = make_script(webui)
    p = H.Processing(webui, steps=8, n_iter=2)
    p.scripts = H.ScriptRunner([script, Interrupter()], s.to_args())
    H.process_images(p)
    assert webui.callbacks.count() == 0
    assert len(script.last_job.passes) == 1 and len(script.last_job.passes[0].run.mode.controller.records) < 8
    res, p2, script2, _ = run(webui, s, steps=4)
    assert [len(sp.run.mode.controller.records) for sp in script2.last_job.passes] == [4]


def test_job_that_dies_does_not_leak(webui):
    from webui_helpers import make_script

    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=2)
    dead = make_script(webui)
    p_dead = H.Processing(webui, steps=3)
    dead.process(p_dead, *s.to_args())  # registered, but the job died before postprocess
    assert webui.callbacks.count() == 3
    res, p, script, _ = run(webui, NegGuideSettings(), steps=3)  # another job, extension off
    assert webui.callbacks.count() == 0  # the stale callback removed itself on the foreign denoiser


def test_off_registers_nothing_and_changes_nothing(webui):
    base = run(webui, None, steps=3)[0].latents[0]
    res, p, script, _ = run(webui, NegGuideSettings(), steps=3)
    assert torch.equal(res.latents[0], base)
    assert not any(k.startswith("NegGuide") for k in p.extra_generation_params)


@pytest.mark.parametrize(
    "bad,needle",
    [
        (dict(mode=MODE_WINDOWED, window_start=0), "count from step 1"),
        (dict(mode=MODE_WINDOWED, window_start=2.5), "whole steps"),
        (dict(mode=MODE_WINDOWED, window_unit=UNIT_FRACTION, window_start=0.1, window_end=1.5), "in [0, 1]"),
        (dict(mode=MODE_WINDOWED, window_unit="weeks"), "window unit"),
        (dict(mode=MODE_WINDOWED, hr_window=HR_CUSTOM, hr_start=0, hr_end=3), "hires window: step windows count"),
        (dict(mode=MODE_DNG, lambda0=-1), "lambda0 must be in [0, 1000]"),
        (dict(mode=MODE_DNG, lambda0=float("nan")), "must be a number"),
        (dict(mode=MODE_DNG, prior=0), "prior must be strictly between 0 and 1"),
        (dict(mode=MODE_DNG, prior=1.2), "prior must be strictly between 0 and 1"),
        (dict(mode=MODE_DNG, p_max=1.0), "p_max must be strictly between 0 and 1"),
        (dict(mode=MODE_DNG, prior=0.5, p_max=0.3), "above p_max"),
        (dict(mode=MODE_DNG, temperature=0), "temperature"),
        (dict(mode=MODE_DNG, offset=5), "offset"),
        (dict(mode=MODE_DNG, tracker="magic"), "tracker must be one of"),
        (dict(mode="Sharpen"), "unknown mode"),
        (dict(mode=MODE_DNG, lambda0="abc"), "must be a number"),
    ],
)
def test_invalid_settings_block_generation(webui, bad, needle):
    s = NegGuideSettings(**bad)
    res, p, script, _ = run(webui, s, steps=6, enable_hr=True)
    assert webui.sd_model.calls == 0 and res.images == []  # nothing was generated
    assert any(needle in e for e in p.negguide_errors), p.negguide_errors
    assert all(e.startswith("Negative guidance:") for e in p.negguide_errors)
    assert needle in p.extra_generation_params["NegGuide error"]  # what the API response's info carries


@pytest.mark.parametrize("sampler", ["Euler a", "Heun", "DDIM"])
@pytest.mark.parametrize(
    "settings",
    [
        NegGuideSettings(mode=MODE_DNG, lambda0=0.0),
        NegGuideSettings(mode=MODE_WINDOWED, window_start=6, window_end=5),  # ends before it starts: empty
        NegGuideSettings(mode=MODE_WINDOWED, window_start=40, window_end=45),  # beyond the run's 6 steps
        NegGuideSettings(mode=MODE_WINDOWED, window_unit=UNIT_FRACTION, window_start=0.5, window_end=0.5),
    ],
    ids=["dng-lambda0-0", "empty-window", "window-beyond-run", "empty-fraction-window"],
)
def test_sweep_baselines_equal_an_empty_negative_prompt(webui, sampler, settings):
    """lambda0 = 0 and an empty window are well-defined: exactly the image of an empty negative prompt."""
    kw = dict(steps=6, sampler_name=sampler, batch_size=2, prompt="a red car", cfg_scale=6.0)
    stock = run(webui, None, negative_prompt="", **kw)[0]
    res, p, script, _ = run(webui, settings, negative_prompt="rust", **kw)
    assert len(res.images) == 2
    for a, b in zip(res.latents, stock.latents, strict=True):
        assert torch.equal(a, b)
    assert "NegGuide mode" in res.infotexts[0]


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_window_over_every_step_is_the_plain_negative_prompt(webui, sampler):
    kw = dict(steps=5, sampler_name=sampler, batch_size=2, prompt="a red car", negative_prompt="rust", cfg_scale=6.0)
    stock = run(webui, None, **kw)[0]
    full = run(webui, NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=5), **kw)[0]
    for a, b in zip(full.latents, stock.latents, strict=True):
        assert torch.equal(a, b)


def test_empty_negative_and_and_prompt_rejected(webui):
    for s, kw, needle in [
        (NegGuideSettings(mode=MODE_DNG), dict(negative_prompt=""), "needs a negative"),
        (NegGuideSettings(mode=MODE_DNS), dict(prompt="a AND b"), "remove 'AND'"),
    ]:
        res, p, script, _ = run(webui, s, steps=3, **kw)
        assert res.images == [] and any(needle in e for e in p.negguide_errors)


def test_xyz_override_attribute(webui):
    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=1)
    from webui_helpers import make_script

    script = make_script(webui)
    p = H.Processing(webui, steps=4, negative_prompt="a dog")
    p.negguide_overrides = {"window_start": 2, "window_end": 3}
    p.scripts = H.ScriptRunner([script], s.to_args())
    H.process_images(p)
    assert [r["negative_active"] for r in script.last_job.passes[0].run.records] == [False, True, True, False]
    assert p.extra_generation_params["NegGuide window start"] == "2"


def test_marker_helper_sign():
    t = torch.zeros(2, 3, 4)
    t[0, 0] = 1024
    t[1, 0] = -1024
    assert marker_sign(t).tolist() == [1, -1]


@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_gated_probes_for_some_images_only_keep_each_image_exact(tiny_sd64, forge, monkeypatch):
    """Gated flow tracker: on steps where only one image of the batch probes, its probe rows go through the one
    UNet call (A1111) or Forge's post-CFG evaluation; image i of the batch == a single run of its seed."""
    from harness import forge as F

    # The random UNet's evidence moves the posterior by less than the gate's 0.2 nats: any move opens it here.
    dng_config = NegGuideSettings.dng_config
    monkeypatch.setattr(NegGuideSettings, "dng_config",
                        lambda self: dataclasses.replace(dng_config(self), gate=ProbeGate(min_move=1e-9)))
    model = F.make_forge_model(tiny_sd64) if forge else tiny_sd64
    webui = H.WebUI(model)
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-gated", lambda0=2.0)
    kw = dict(steps=6, sampler_name="Euler", prompt="a red car", cfg_scale=5.0, forge=forge)
    try:
        # image 1's negative is its positive prompt: no evidence, its posterior never moves, it never probes
        both = run(webui, s, batch_size=2, negative_prompt=["rust", "a red car"], **kw)
        records = both[2].last_job.passes[0].run.records
        assert any(r["probe_rows"] == 2 for r in records), [r["probe_rows"] for r in records]
        p_both = torch.tensor([r["p"] for r in both[2].last_job.passes[0].run.mode.controller.records])
        for i, (neg, seed) in enumerate([("rust", 1), ("a red car", 2)]):
            alone = run(webui, s, batch_size=1, negative_prompt=neg, seed=seed, **kw)
            p_alone = torch.tensor([r["p"] for r in alone[2].last_job.passes[0].run.mode.controller.records])[:, 0]
            assert torch.allclose(p_both[:, i], p_alone, rtol=1e-9, atol=0)
            assert torch.equal(both[0].latents[i], alone[0].latents[0])
        assert webui.callbacks.errors == [] and webui.callbacks.count() == 0
    finally:
        for attr in ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora"):
            if hasattr(model, attr):
                delattr(model, attr)
