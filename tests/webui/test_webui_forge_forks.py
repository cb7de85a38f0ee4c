"""The extension on each program of the Forge line (Forge 2.x, reForge, Forge Classic, Forge Neo) in the Forge
harness, each program playing its own sampling function and exposing its own module layout
(``harness/forge_forks.py``): the adapter finds the program's API by import, and every exact invariant holds."""

from __future__ import annotations

import pytest
import torch
from harness import a1111 as H
from harness import forge as F
from harness import forge_forks as FF
from webui_helpers import make_script, run

from negguide import guidance as G
from negguide_webui.extension import Backend
from negguide_webui.forge import ForgeAdapter
from negguide_webui.forge_api import find_forge_api
from negguide_webui.job import Job, PendingEvaluation
from negguide_webui.settings import MODE_DNG, MODE_DNS, MODE_OFF, MODE_WINDOWED, NegGuideSettings

PROGRAMS = list(FF.PROGRAMS)


@pytest.fixture
def webui(forge):
    return forge


@pytest.fixture
def webui_xl(forge_xl):
    return forge_xl


def _no_adapter_failure(script):
    assert not [m for m in script.last_job.warnings if "failed" in m], script.last_job.warnings


@pytest.mark.parametrize(
    "name, compile_fn, where",
    [
        ("forge", F.compile_conditions, "backend.sampling"),
        ("neo", F.compile_conditions, "backend.sampling"),
        ("reforge", FF.cond_from_a1111_to_patched_ldm, "ldm_patched.modules.samplers.calc_cond_batch"),
        ("classic", FF.cond_from_a1111_to_patched_ldm, "ldm_patched.modules.samplers.calc_cond_uncond_batch"),
    ],
)
def test_the_api_is_found_where_each_program_keeps_it(name, compile_fn, where):
    with F.exposed(FF.PROGRAMS[name].layout()):
        api = find_forge_api()
    assert api.compile is compile_fn and api.where == where


@pytest.mark.parametrize("name", PROGRAMS)
def test_evaluate_gives_one_prediction_per_conditioning(tiny_sd, name):
    """Three conditionings at once: paired into two calls (two-conditioning programs) or one list (reForge)."""
    model = H.CompVisDenoiser(tiny_sd)
    with F.exposed(FF.PROGRAMS[name].layout()):
        api = find_forge_api()
    x, sigma = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((2,), 3.0)
    texts = ["a red car", "rust", "a dog"]
    encoded = [tiny_sd.get_learned_conditioning([t] * 2) for t in texts]
    outs = api.evaluate(model, [api.compile(c) for c in encoded], x, sigma, {})
    assert len(outs) == 3
    for c, out in zip(encoded, outs, strict=True):
        assert torch.allclose(out, model(x, sigma, cond={"c_crossattn": [c]}), atol=1e-5)


def _settings_cases():
    return {
        "off": NegGuideSettings(mode=MODE_OFF),
        "window-all-steps": NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=4),
        "empty-window": NegGuideSettings(mode=MODE_WINDOWED, window_start=3, window_end=2),
        "dng-lambda0-0": NegGuideSettings(mode=MODE_DNG, lambda0=0.0),
        "dns": NegGuideSettings(mode=MODE_DNS),
    }


# what stock run each case must equal, bit for bit: (prompt, negative prompt)
STOCK_EQUIVALENT = {
    "off": ("a red car", "rust"),
    "window-all-steps": ("a red car", "rust"),
    "empty-window": ("a red car", ""),
    "dng-lambda0-0": ("a red car", ""),
    "dns": ("", "a red car"),  # DNS at s = CFG - 1 is stock CFG with the prompts swapped
}


@pytest.mark.parametrize("case", list(STOCK_EQUIVALENT))
@pytest.mark.parametrize("name", PROGRAMS)
def test_exact_invariants(webui, name, case):
    program = FF.PROGRAMS[name]
    kw = dict(program=program, steps=4, sampler_name="Euler a", batch_size=2, cfg_scale=6.0)
    prompt, negative = STOCK_EQUIVALENT[case]
    stock = run(webui, None, prompt=prompt, negative_prompt=negative, **kw)[0]
    res, p, script, _ = run(webui, _settings_cases()[case], prompt="a red car", negative_prompt="rust", **kw)
    assert len(res.latents) == 2
    for a, b in zip(res.latents, stock.latents, strict=True):
        assert torch.equal(a, b)
    if case != "off":
        _no_adapter_failure(script)


def _spies(log: list):
    """Two scripts around the extension's: post-CFG functions before and after negguide's on the UNet patcher
    (each on its own clone, as a real extension must), recording the prediction that goes in and out."""

    def spy(key):
        def fn(args):
            log.append((key, {k: args.get(k) for k in ("denoised", "input", "sigma", "cond_denoised")}))
            return args["denoised"]

        return fn

    class Spy:
        n_args = 0

        def __init__(self, key):
            self.key = key

        def process_before_every_sampling(self, p, **kw):
            fo = p.sd_model.forge_objects
            fo.unet = fo.unet.clone()
            fo.unet.set_model_sampler_post_cfg_function(spy(self.key))

    return Spy("before"), Spy("after")


@pytest.mark.parametrize("tracker", ["transition", "flow-hutchinson"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_dng_adds_the_core_term_to_the_programs_own_prediction(webui, name, tracker):
    """Whatever the program's CFG did (Classic's first evaluation at CFG 1 included), negguide adds exactly
    -lambda (N - P) to it, N and P the program's predictions for the negative and the positive prompt."""
    m = webui.sd_model
    log: list = []
    before, after = _spies(log)
    script = make_script(webui, None)
    s = NegGuideSettings(mode=MODE_DNG, tracker=tracker, lambda0=3.0)
    p = F.ForgeProcessing(webui, program=FF.PROGRAMS[name], steps=4, batch_size=2, cfg_scale=6.0, prompt="a red car",
                          negative_prompt="rust", sampler_name="Euler a")
    p.scripts = H.ScriptRunner([before, script, after], s.to_args())
    F.process_images(p)
    _no_adapter_failure(script)
    run_ = script.last_job.passes[0].run
    assert run_.tracker_name() == tracker
    lams = [torch.tensor(r["lambda"]) for r in run_.mode.controller.records]
    ins = [a for k, a in log if k == "before"]
    outs = [a for k, a in log if k == "after"]
    assert len(ins) == len(outs) == len(lams) == 4
    wrap = H.CompVisDenoiser(m)
    pos, neg = m.get_learned_conditioning(["a red car"] * 2), m.get_learned_conditioning(["rust"] * 2)
    for a, b, lam in zip(ins, outs, lams, strict=True):
        P = wrap(a["input"], a["sigma"], cond={"c_crossattn": [pos]})
        N = wrap(a["input"], a["sigma"], cond={"c_crossattn": [neg]})
        assert torch.allclose(a["cond_denoised"], P, atol=1e-5)
        assert torch.allclose(b["denoised"] - a["denoised"], G.dng_term(P, N, lam), atol=1e-4)


def test_reforge_calc_cond_batch_override_evaluates_the_negative_too(webui):
    """reForge lets ``model_options["sampler_calc_cond_batch_function"]`` replace its evaluator: the extra rows
    go through it like reForge's own."""
    seen = []

    def override(args):
        seen.append(len(args["conds"]))
        return FF.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    class Install:
        n_args = 0

        def process_before_every_sampling(self, p, **kw):
            fo = p.sd_model.forge_objects
            fo.unet = fo.unet.clone()
            fo.unet.model_options["sampler_calc_cond_batch_function"] = override

    script = make_script(webui, None)
    p = F.ForgeProcessing(webui, program=FF.REFORGE, steps=3, sampler_name="Euler a", negative_prompt="rust")
    p.scripts = H.ScriptRunner([Install(), script], NegGuideSettings(mode=MODE_DNG, tracker="transition").to_args())
    F.process_images(p)
    _no_adapter_failure(script)
    assert seen == [2, 1] * 3  # per step: reForge's [cond, uncond], then negguide's [negative]


@pytest.mark.parametrize("name", PROGRAMS)
def test_dng_through_a_hires_pass_at_cfg_1(webui, name):
    """At hires CFG 1 the programs skip the uncond rows differently (Forge: uncond None before the callback;
    reForge: ``uncond`` None in the post-CFG arguments; Classic ignores hires CFG): DNG keeps running."""
    s = NegGuideSettings(mode=MODE_DNG, tracker="flow-moment")
    res, p, script, _ = run(webui, s, program=FF.PROGRAMS[name], steps=3, enable_hr=True, hr_second_pass_steps=2,
                            hr_cfg=1.0, negative_prompt="rust")
    _no_adapter_failure(script)
    assert [len(sp.run.mode.controller.records) for sp in script.last_job.passes] == [3, 2]
    assert all(torch.isfinite(t).all() for t in res.latents)


@pytest.mark.parametrize(
    "settings",
    [
        NegGuideSettings(mode=MODE_OFF),
        NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=3),
        NegGuideSettings(mode=MODE_DNS),
        NegGuideSettings(mode=MODE_DNG, tracker="transition", lambda0=2.0),
        NegGuideSettings(mode=MODE_DNG, tracker="flow-hutchinson", lambda0=2.0),
    ],
    ids=["off", "windowed", "dns", "dng-transition", "dng-hutchinson"],
)
@pytest.mark.parametrize("name", PROGRAMS)
def test_batch_image_is_the_single_run_of_its_seed(forge64, name, settings):
    """In float64 (batch-size effects of float32 kernels vanish): image i of a batch == a run of its seed alone."""
    kw = dict(program=FF.PROGRAMS[name], steps=4, sampler_name="Euler a", prompt="a red car",
              negative_prompt="rust", cfg_scale=5.0)
    both = run(forge64, settings, batch_size=2, seed=10, **kw)[0].latents
    for i in range(2):
        alone = run(forge64, settings, batch_size=1, seed=10 + i, **kw)[0].latents[0]
        assert torch.allclose(both[i], alone, rtol=0, atol=1e-10), (i, (both[i] - alone).abs().max())
    assert not torch.allclose(both[0], both[1])


def test_negative_gets_what_the_program_attached_to_its_own_cond(tiny_sd):
    """The concat conditioning (inpainting, edit models) and the ControlNet come from the program's own compiled
    cond, so each fork's rule for attaching them (Neo: only for inpainting models) holds for the negative too."""
    neg = tiny_sd.get_learned_conditioning(["rust"])
    concat, control = F.Condition(torch.ones(1, 5, 8, 8)), object()
    own = [{"model_conds": {"c_crossattn": F.Condition(neg), "c_concat": concat}, "control": control}]
    adapter = ForgeAdapter(Job(NegGuideSettings(mode=MODE_DNG), None), None, Backend(None, None, None, F.API))
    compiled = adapter._compiled_negative(PendingEvaluation(None, negative=neg), own)
    assert compiled[0]["model_conds"]["c_concat"] is concat and compiled[0]["control"] is control
    assert compiled[0]["model_conds"]["c_crossattn"].cond is neg  # its own text, not the cond's
    plain = adapter._compiled_negative(PendingEvaluation(None, negative=neg), [{"model_conds": {}}])
    assert set(plain[0]["model_conds"]) == {"c_crossattn"} and "control" not in plain[0]


@pytest.mark.parametrize("name", PROGRAMS)
def test_sdxl_conditionings_stay_the_programs_dict_class(webui_xl, name):
    """The Forge line indexes every SDXL conditioning with ``DictWithShape.advanced_indexing``: what negguide puts
    into the slots keeps that class (a plain dict stopped reForge's sampler with a TypeError on real SDXL)."""
    kw = dict(program=FF.PROGRAMS[name], steps=3, sampler_name="Euler", batch_size=2, cfg_scale=6.0,
              prompt="a red car", negative_prompt="rust")
    stock = run(webui_xl, None, **kw)[0]
    full = run(webui_xl, NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=3), **kw)[0]
    assert all(torch.equal(a, b) for a, b in zip(full.latents, stock.latents, strict=True))
    for s in (NegGuideSettings(mode=MODE_WINDOWED, window_start=2, window_end=3), NegGuideSettings(mode=MODE_DNS),
              NegGuideSettings(mode=MODE_DNG, tracker="flow-hutchinson")):
        res, p, script, _ = run(webui_xl, s, **kw)
        _no_adapter_failure(script)
        assert all(torch.isfinite(t).all() for t in res.latents)
