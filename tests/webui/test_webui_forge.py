"""The extension inside the Forge-style harness: on_cfg_denoiser with B rows, DNG through the UNet patcher."""

from __future__ import annotations

import pytest
import torch
from harness import a1111 as H
from harness import forge as F
from webui_helpers import encode, run, same

from negguide import guidance as G
from negguide_webui.extension import Backend
from negguide_webui.forge import TAG, ForgeAdapter
from negguide_webui.forge_api import ForgeAPI
from negguide_webui.job import PendingEvaluation
from negguide_webui.settings import HR_CUSTOM, MODE_DNG, MODE_DNS, MODE_WINDOWED, NegGuideSettings


@pytest.fixture
def webui(forge):
    return forge


def test_windowed_on_b_rows(webui):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=3)
    res, p, script, spy = run(webui, s, spy=True, forge=True, steps=5, batch_size=2, negative_prompt="a dog")
    neg = encode(m, "a dog").expand(2, -1, -1)
    assert all(e["x"].shape[0] == 2 for e in spy.den)  # Forge passes only the image rows
    assert [same(e["uncond"], neg) for e in spy.den] == [False, True, True, False, False]
    assert isinstance(script.last_job and script._ng_adapter, type(None))  # removed after the job


def test_dns_swap(webui):
    m = webui.sd_model
    res, p, script, spy = run(webui, NegGuideSettings(mode=MODE_DNS), spy=True, forge=True, steps=3, prompt="a red car")
    for e in spy.den:
        assert same(e["cond"], encode(m, "")) and same(e["uncond"], encode(m, "a red car"))


@pytest.mark.parametrize("tracker", ["transition", "flow-moment", "flow-hutchinson", "flow-gated"])
def test_dng_post_cfg_matches_separate_calls(webui, tracker):
    m = webui.sd_model
    s = NegGuideSettings(mode=MODE_DNG, tracker=tracker, lambda0=3.0)
    res, p, script, spy = run(
        webui,
        s,
        spy=True,
        forge=True,
        steps=4,
        batch_size=2,
        cfg_scale=6.0,
        prompt="a red car",
        negative_prompt="rust",
        sampler_name="Euler a",
    )
    guidance = script.last_job.passes[0].run
    assert guidance.tracker_name() == tracker and len(guidance.mode.controller.records) == 4
    lams = {r["step"]: torch.tensor(r["lambda"]) for r in guidance.mode.controller.records}
    pos, neg, empty = encode(m, "a red car"), encode(m, "rust"), encode(m, "")
    wrap = H.CompVisDenoiser(m)
    for i, (e, out) in enumerate(zip(spy.den, spy.after, strict=True)):
        assert same(e["uncond"], empty.expand(2, -1, -1))  # Forge's uncond branch carries the empty prompt

        def call(c, e=e):
            return wrap(e["x"], e["sigma"], cond={"c_crossattn": [c.expand(2, -1, -1)]})

        ref = G.dng_text(call(empty), call(pos), call(neg), 6.0, lams[i])
        assert torch.allclose(out, ref, atol=1e-4)


def test_dng_patch_is_a_closure_installed_once_per_sampling(webui):
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-moment")
    seen = []

    class Watch:
        n_args = 0

        def process_before_every_sampling(self, p, **kw):
            fns = p.sd_model.forge_objects.unet.model_options.get("sampler_post_cfg_function", [])
            seen.append(sum(1 for f in fns if getattr(f, TAG, False)))

    from webui_helpers import make_script

    script = make_script(webui)
    p = F.ForgeProcessing(webui, steps=3, enable_hr=True, hr_second_pass_steps=2)
    p.scripts = H.ScriptRunner([script, Watch()], s.to_args())
    res = F.process_images(p)
    assert seen == [1, 1, 1]  # first pass, hires pass called twice: never stacked
    passes = script.last_job.passes
    assert len(passes) == 2 and [len(sp.run.mode.controller.records) for sp in passes] == [3, 2]
    fns = p.sd_model.forge_objects.unet.model_options["sampler_post_cfg_function"]
    clone = p.sd_model.forge_objects.unet.clone()  # a later clone must still work (closure, not bound method)
    assert clone.model_options["sampler_post_cfg_function"][0] is fns[0]
    assert all(torch.isfinite(t).all() for t in res.latents)


def test_dng_hires_cfg1_and_failures_never_raise(webui):
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-moment", hr_window=HR_CUSTOM)
    res, p, script, _ = run(webui, s, forge=True, steps=3, enable_hr=True, hr_second_pass_steps=2)
    # hires at CFG 1: uncond skipped, DNG still runs
    assert len(script.last_job.passes[1].run.mode.controller.records) == 2
    job = script.last_job
    backend = Backend(webui.callbacks, webui.state, None, forge_api=ForgeAPI(None, None, "broken"))
    adapter = ForgeAdapter(job, p, backend)
    fn = adapter.make_post_cfg()
    plan = job.current.run.plan(torch.zeros(1, 4, 8, 8), 1.0)
    job.current.pending = PendingEvaluation(plan)
    args = {
        "denoised": torch.ones(1, 4, 8, 8),
        "input": torch.zeros(1, 4, 8, 8),
        "sigma": torch.ones(1),
        "cond_denoised": torch.zeros(1, 4, 8, 8),
        "model": None,
        "model_options": {},
        "cond": [],
    }
    out = fn(args)  # the broken API raises inside: Forge must get its own prediction back, not an exception
    assert torch.equal(out, args["denoised"]) and adapter.errors == 1


@pytest.mark.parametrize(
    "settings",
    [
        NegGuideSettings(mode=MODE_DNG, lambda0=0.0),
        NegGuideSettings(mode=MODE_WINDOWED, window_start=6, window_end=5),
        NegGuideSettings(mode=MODE_WINDOWED, window_start=40, window_end=45),
    ],
    ids=["dng-lambda0-0", "empty-window", "window-beyond-run"],
)
def test_sweep_baselines_equal_an_empty_negative_prompt(webui, settings):
    kw = dict(forge=True, steps=5, sampler_name="Euler a", batch_size=2, prompt="a red car", cfg_scale=6.0)
    stock = run(webui, None, negative_prompt="", **kw)[0]
    res = run(webui, settings, negative_prompt="rust", **kw)[0]
    assert len(res.images) == 2
    for a, b in zip(res.latents, stock.latents, strict=True):
        assert torch.equal(a, b)


def test_window_over_every_step_is_the_plain_negative_prompt(webui):
    kw = dict(forge=True, steps=5, sampler_name="Euler", batch_size=2, prompt="a red car", negative_prompt="rust")
    stock = run(webui, None, **kw)[0]
    full = run(webui, NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=5), **kw)[0]
    for a, b in zip(full.latents, stock.latents, strict=True):
        assert torch.equal(a, b)
