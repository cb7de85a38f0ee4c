"""The nodes sampling through the ComfyUI stand-in: exact invariants, rows per model call, per-image state,
nothing left behind, refusals. Runs in CI (no ComfyUI needed); the same invariants against the real ComfyUI are in
test_comfyui_models.py and test_comfyui_integration.py."""

import comfy.samplers as S
import pytest
import torch
from standin_runs import (
    DNG,
    EMPTY,
    FLOW_SIGMAS,
    NEGATIVE,
    POSITIVE,
    SIGMAS,
    WINDOW,
    custom,
    guider,
    ksampler,
    model,
    noise,
    patch,
)

from negguide.checks import SettingsError
from negguide_comfyui.patch import EMPTY_KEY


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun"])
def test_slot_only_modes_are_comfyui_cfg_bit_for_bit(sampler):
    m = model()
    stock, stock_empty, swapped = (ksampler(m, p, n, sampler) for p, n in
                                   ((POSITIVE, NEGATIVE), (POSITIVE, EMPTY), (EMPTY, POSITIVE)))
    full_window = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=1, window_end=4)[0]
    empty_window = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=6, window_end=5)[0]
    dng_off = patch("NegGuideDNGPatch", m, **{**DNG, "lambda0": 0.0})[0]
    dns = patch("NegGuideDNSPatch", m)[0]
    assert torch.equal(ksampler(full_window, sampler=sampler), stock)
    assert torch.equal(ksampler(empty_window, sampler=sampler), stock_empty)
    assert torch.equal(ksampler(dng_off, sampler=sampler), stock_empty)
    assert torch.equal(ksampler(dns, sampler=sampler), swapped)
    dns_guider = guider("NegGuideDNSGuider", m, dns_scale=5.0)[0]  # s = 5: CFG 6 with the prompts swapped
    assert torch.equal(custom(dns_guider, sampler), swapped)


def test_window_in_sigmas_and_steps_pick_the_same_steps():
    m = model()
    by_steps = ksampler(patch("NegGuideWindowedPatch", m, **WINDOW, window_start=2, window_end=3)[0])
    sigma_window = {**WINDOW, "window_unit": "sigma", "window_start": 6.0, "window_end": 2.0}  # SIGMAS[1:3]
    patched, trace = patch("NegGuideWindowedPatch", m, **sigma_window)
    assert torch.equal(ksampler(patched), by_steps)
    assert [r["negative_active"] for r in trace.passes[0].records] == [False, True, True, False]


@pytest.mark.parametrize("node,values", [("NegGuideDNGGuider", DNG), ("NegGuideWindowedGuider",
                                         {**WINDOW, "form": "3-term", "window_start": 2, "window_end": 3}),
                                        ("NegGuidePerpNegGuider", {"neg_scale": 1.0})])
def test_guider_and_ksampler_patch_sample_the_same(node, values):
    m = model()
    via_guider = custom(guider(node, m, cfg=6.0, **values)[0], "euler_ancestral")
    via_patch = ksampler(patch(node.replace("Guider", "Patch"), m, **values)[0], sampler="euler_ancestral")
    assert torch.equal(via_guider, via_patch)


def test_every_row_of_an_evaluation_goes_through_one_model_call():
    m = model()
    ksampler(patch("NegGuideDNGPatch", m, **DNG)[0], sampler="euler_ancestral")  # transition: 3 rows per image
    assert m.model.calls == [6] * 4
    m.model.calls.clear()
    hutchinson = patch("NegGuideDNGPatch", m, **{**DNG, "tracker": "flow-hutchinson"})
    ksampler(hutchinson[0], sampler="euler")  # + one call for the probe pair at each step's start
    assert m.model.calls == [6, 4] * 4
    summary = hutchinson[1].passes[0]
    assert (summary.tracker, summary.evaluations, summary.rows_per_image_per_step) == ("flow-hutchinson", 4, 5.0)


def test_second_order_samplers_probe_only_at_a_steps_first_evaluation():
    m = model()
    ksampler(patch("NegGuideDNGPatch", m, **{**DNG, "tracker": "flow-hutchinson"})[0], sampler="heun")
    # heun's corrector runs at the next step's sigma: the schedule clock counts it as that step's start
    assert m.model.calls == [6, 4, 6, 4, 6, 6, 4, 6, 6, 4, 6]


def test_dng_record_per_image_and_the_trace_of_the_latest_prompt():
    m = model()
    dng, trace = patch("NegGuideDNGPatch", m, **DNG)
    ksampler(dng, sampler="euler_ancestral")
    summary = trace.passes[0]
    assert [r["step"] for r in summary.records] == [0, 1, 2, 3]
    assert all(len(r["p"]) == 2 and len(r["lambda"]) == 2 for r in summary.records)
    assert len(summary.final_p) == 2 and summary.sampler == "euler_ancestral"
    ksampler(dng, sampler="euler")  # outside a prompt every pass starts a new record
    assert len(trace.passes) == 1 and trace.passes[0].sampler == "euler"


def test_gated_probes_are_rows_of_the_probing_images_only_and_the_summary_counts_them():
    m = model()
    dng, trace = patch("NegGuideDNGPatch", m, **DNG)  # auto: flow-gated on euler
    ksampler(dng, sampler="euler", x=noise(3))
    summary = trace.passes[0]
    state_calls = [n for n in m.model.calls if n == 9]  # 3 branches x 3 images at the sampler's state
    probe_calls = [n for n in m.model.calls if n != 9]  # one probe pair: 2 rows per probing image
    assert summary.tracker == "flow-gated" and len(state_calls) == 4
    assert probe_calls and any(n < 6 for n in probe_calls)  # a step where only some images probe: their rows only
    assert sum(probe_calls) == sum(r["probe_rows"] for r in summary.records)
    assert summary.rows == sum(m.model.calls)


@pytest.mark.parametrize("sampler,tracker", [("euler", "flow-hutchinson"), ("euler", "transition"),
                                             ("heun", "flow-moment"), ("euler", "flow-gated")])
def test_image_i_of_a_batch_is_a_single_run_of_its_noise(sampler, tracker):
    m = model()
    dng = patch("NegGuideDNGPatch", m, **{**DNG, "tracker": tracker})[0]
    x = noise(3)
    batch = ksampler(dng, sampler=sampler, x=x)
    for i in range(3):
        assert torch.equal(ksampler(dng, sampler=sampler, x=x[i:i + 1])[0], batch[i])
    swapped = ksampler(dng, sampler=sampler, x=x.flip(0))
    assert torch.equal(swapped, batch.flip(0))


class InterruptProcessingException(Exception):
    """What ComfyUI's progress hook raises mid-sampling when a prompt is interrupted."""


def test_an_interrupted_sampler_leaves_nothing_behind():
    m = model()
    dng, trace = patch("NegGuideDNGPatch", m, **DNG)
    options_before = repr(dng.model_options)
    reference = ksampler(dng, sampler="euler")
    calls = []

    def interrupt(x, t, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise InterruptProcessingException()
        return original(x, t, **kwargs)

    original = m.model.apply_model
    m.model.apply_model = interrupt
    with pytest.raises(InterruptProcessingException):
        ksampler(dng, sampler="euler")
    m.model.apply_model = original
    assert trace.passes == [] and repr(dng.model_options) == options_before
    assert torch.equal(ksampler(dng, sampler="euler"), reference)


def test_two_patched_models_and_a_repatched_model_share_nothing():
    m = model()
    dng = patch("NegGuideDNGPatch", m, **DNG)[0]
    window = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=2, window_end=3)[0]
    alone = ksampler(dng), ksampler(window)
    interleaved = ksampler(window), ksampler(dng)
    assert torch.equal(interleaved[1], alone[0]) and torch.equal(interleaved[0], alone[1])
    repatched = patch("NegGuideWindowedPatch", dng, **WINDOW, window_start=2, window_end=3)[0]
    assert torch.equal(ksampler(repatched), alone[1])  # the later negguide patch replaces the earlier one
    assert ksampler(m) is not None and not m.wrappers  # the original model is untouched


def test_another_patchs_calc_cond_batch_function_and_post_cfg_functions_still_run():
    m = model()
    seen = []

    def their_calc(args):
        seen.append(len(args["conds"]))
        return S.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    m.set_model_sampler_calc_cond_batch_function(their_calc)
    m.set_model_sampler_post_cfg_function(lambda args: args["denoised"] * 1.0)
    ksampler(patch("NegGuideDNGPatch", m, **DNG)[0], sampler="euler_ancestral")
    assert seen == [3] * 4  # negguide's rows went through the other patch's function


def test_the_empty_prompt_exists_only_inside_a_sampling_call():
    m = model()
    g = guider("NegGuideDNGGuider", m, cfg=6.0, **DNG)[0]
    custom(g)
    assert EMPTY_KEY not in g.original_conds and not hasattr(g, "conds")


def test_rectified_flow_models_are_guided_in_their_own_frame_and_refused_where_meaningless():
    m = model(flow=True)
    stock = ksampler(m, sigmas=FLOW_SIGMAS)
    window = patch("NegGuideWindowedPatch", m, **{**WINDOW, "window_unit": "sigma"}, window_start=1.0,
                   window_end=0.0)
    assert torch.equal(ksampler(window[0], sigmas=FLOW_SIGMAS), stock)  # t = 1 is sigma = inf in the core
    dng = patch("NegGuideDNGPatch", m, **DNG)
    ksampler(dng[0], sigmas=FLOW_SIGMAS)
    assert dng[1].passes[0].tracker == "flow-gated" and len(dng[1].passes[0].records) == 4
    with pytest.raises(SettingsError, match="rectified-flow"):
        patch("NegGuideSLDPatch", m, threshold=0.04, scale=100.0, momentum_scale=0.1, momentum_beta=0.2,
              warmup_steps=0)
    m.model.calls.clear()
    with pytest.raises(SettingsError, match="stochastic rectified-flow sampler"):
        ksampler(dng[0], sampler="euler_ancestral", sigmas=FLOW_SIGMAS)
    assert m.model.calls == []  # refused before any model row


def test_guidance_distilled_models_are_refused_clearly():
    m = model(flow=True, guidance_embed=True)
    with pytest.raises(SettingsError, match="guidance-distilled"):
        patch("NegGuideDNGPatch", m, **DNG)
    window = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=1, window_end=4)[0]
    with pytest.raises(SettingsError, match="runs without CFG"):
        ksampler(window, cfg=1.0, sigmas=FLOW_SIGMAS)
    assert ksampler(window, cfg=3.5, sigmas=FLOW_SIGMAS).shape == (2, 4, 4, 4)


def test_guiders_that_do_not_run_comfyuis_cfg_are_refused():
    m = model()
    dng = patch("NegGuideDNGPatch", m, **DNG)[0]

    class OwnGuidance(S.CFGGuider):
        def predict_noise(self, x, timestep, model_options=None, seed=None):
            return x

    own = OwnGuidance(dng)
    own.set_conds(POSITIVE, NEGATIVE)
    with pytest.raises(SettingsError, match="computes its own guidance"):
        custom(own)
    basic = S.CFGGuider(dng)
    basic.inner_set_conds({"positive": POSITIVE})  # BasicGuider: no negative
    with pytest.raises(SettingsError, match="no negative"):
        custom(basic)


@pytest.mark.parametrize("values,message", [({"window_start": 0, "window_end": 4}, "count from step 1"),
                                            ({"window_start": 1.5, "window_end": 4}, "whole steps")])
def test_bad_settings_stop_at_the_node_with_the_cores_message(values, message):
    with pytest.raises(SettingsError, match=message):
        patch("NegGuideWindowedPatch", model(), **WINDOW, **values)


def test_a_bad_schedule_is_refused_before_any_model_row():
    m = model()
    dng = patch("NegGuideDNGPatch", m, **DNG)[0]
    with pytest.raises(SettingsError, match="decreasing noise schedule"):
        ksampler(dng, sigmas=SIGMAS.flip(0))
    assert m.model.calls == []
