"""Exact invariants against the pipelines' own outputs (same generator): off == pipe(...), windows over every
step / no step, DNS == swapped prompts at s = w - 1, DNG at lambda0 = 0 == empty negative, and a partial window
== the pipeline with its negative embeddings switched on in the window by diffusers' own step callback."""

from __future__ import annotations

import math

import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT, SIZE, close, gen, wrap

from negguide.generate import StepWindow

STEPS = 4
CASES = [("sd", s) for s in ("euler", "euler_a", "heun", "lms", "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde", "ddim",
                             "ddpm", "pndm", "unipc", "deis")]
CASES += [("sdxl", "euler"), ("sdxl", "euler_a"), ("sdxl", "dpmpp_2m"), ("sd3", "flow_euler"), ("sd3", "flow_heun")]


def latents(call, **kw):
    return call(PROMPT, **{"num_inference_steps": STEPS, "generator": gen(7), "output_type": "latent", **SIZE,
                           **kw}).images


@pytest.mark.parametrize("family, scheduler", CASES)
def test_off_is_the_pipelines_own_output(pipes, family, scheduler):
    ng = wrap(pipes(family), scheduler)
    ref = latents(ng.pipe, negative_prompt=NEGATIVE, guidance_scale=6.0)
    close(latents(ng, negative_prompt=NEGATIVE, guidance_scale=6.0), ref)
    assert ref.abs().max() > 0.1  # not a degenerate model


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_off_decodes_like_the_pipeline(pipes, family):
    ng = wrap(pipes(family))
    kw = dict(negative_prompt=NEGATIVE, guidance_scale=5.0, num_inference_steps=3, output_type="np", **SIZE)
    ref = ng.pipe(PROMPT, generator=gen(3), **kw).images
    out = ng(PROMPT, generator=gen(3), **kw).images
    assert out.shape == ref.shape == (1, 16, 16, 3)
    close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("window", [StepWindow(1, STEPS), StepWindow.always(), StepWindow(math.inf, 0.0, "sigma")])
def test_a_window_over_every_step_is_the_plain_negative_prompt(pipes, family, window):
    ng = wrap(pipes(family))
    ref = latents(ng.pipe, negative_prompt=NEGATIVE, guidance_scale=6.0)
    out = ng(PROMPT, NEGATIVE, mode="windowed", window=window, guidance_scale=6.0, num_inference_steps=STEPS,
             generator=gen(7), output_type="latent", **SIZE)
    close(out.images, ref)
    assert all(r["negative_active"] for r in out.records)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("mode, window", [("windowed", StepWindow(6, 5)), ("windowed", StepWindow.never()),
                                          ("windowed", StepWindow(0.0, 1e-3, "sigma")), ("np3", StepWindow(6, 5))])
def test_an_empty_window_is_the_pipelines_empty_negative_prompt(pipes, family, mode, window):
    """The empty branch is exactly the pipeline's own ``negative_prompt=None`` (SDXL: zeros)."""
    ng = wrap(pipes(family))
    ref = latents(ng.pipe, negative_prompt=None, guidance_scale=6.0)
    out = ng(PROMPT, NEGATIVE, mode=mode, window=window, guidance_scale=6.0, num_inference_steps=STEPS,
             generator=gen(7), output_type="latent", **SIZE)
    close(out.images, ref)
    assert not any(r["negative_active"] for r in out.records)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_dng_at_lambda0_zero_is_the_empty_negative_prompt(pipes, family):
    ng = wrap(pipes(family))
    ref = latents(ng.pipe, negative_prompt=None, guidance_scale=6.0)
    out = ng(PROMPT, NEGATIVE, mode="dng", dng={"lambda0": 0.0}, guidance_scale=6.0, num_inference_steps=STEPS,
             generator=gen(7), output_type="latent", **SIZE)
    close(out.images, ref)
    assert out.tracker is None and out.lambdas is None


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_dns_is_cfg_with_swapped_prompts_at_s_equal_w_minus_1(pipes, family):
    """DNS ``E + s (E - P)`` == the pipeline's CFG with positive = empty, negative = prompt at w = s + 1. The
    empty positive is the pipeline's empty branch (SDXL's zeros, passed as embeddings)."""
    ng, w = wrap(pipes(family)), 5.0
    pipe = ng.pipe
    if family == "sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
        ref = latents(lambda _, **kw: pipe(prompt_embeds=torch.zeros_like(embeds),
                                           pooled_prompt_embeds=torch.zeros_like(pooled), **kw),
                      negative_prompt=PROMPT, guidance_scale=w)
    else:
        ref = latents(lambda _, **kw: pipe("", **kw), negative_prompt=PROMPT, guidance_scale=w)
    for kw in ({"guidance_scale": w}, {"guidance_scale": 2.0, "dns_scale": w - 1}):
        out = ng(PROMPT, NEGATIVE, mode="dns", num_inference_steps=STEPS, generator=gen(7), output_type="latent",
                 **kw, **SIZE)
        close(out.images, ref, rtol=1e-4, atol=1e-4)  # the same rule, written E + s (E - P) vs N + w (P - N)


@pytest.mark.parametrize("family", ["sd", "sd3"])
@pytest.mark.parametrize("second_order", [False, True])
def test_a_partial_window_is_the_pipeline_with_the_negative_switched_on_in_the_window(pipes, family, second_order):
    """Reference: the pipeline's own loop, its [negative, positive] embeddings switched between the empty and
    the negative prompt by diffusers' ``callback_on_step_end`` (which runs after every model evaluation and sets
    the next one's embeddings). Heun evaluates 2 n - 1 times for n steps; both halves of a step share its
    window decision."""
    scheduler = {("sd", False): "euler_a", ("sd", True): "heun", ("sd3", False): "flow_euler",
                 ("sd3", True): "flow_heun"}[family, second_order]
    ng, steps = wrap(pipes(family), scheduler), 6
    pipe = ng.pipe
    active = {1, 2, 3}  # StepWindow(2, 4): 1-based steps 2..4
    out = ng(PROMPT, NEGATIVE, mode="windowed", window=StepWindow(2, 4), guidance_scale=6.0,
             num_inference_steps=steps, generator=gen(5), output_type="latent", **SIZE)
    assert [r["negative_active"] for r in out.records] == [i in active for i in range(steps)]

    if family == "sd":
        pos, neg = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
        _, empty = pipe.encode_prompt(PROMPT, "cpu", 1, True, None)
        embeds = {True: {"prompt_embeds": torch.cat([neg, pos])}, False: {"prompt_embeds": torch.cat([empty, pos])}}
        first = dict(prompt_embeds=pos, negative_prompt_embeds=neg if 0 in active else empty)
    else:
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt=NEGATIVE)
        _, empty, _, empty_pooled = pipe.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt=None)
        embeds = {True: {"prompt_embeds": torch.cat([neg, pos]),
                         "pooled_prompt_embeds": torch.cat([neg_pooled, pooled])},
                  False: {"prompt_embeds": torch.cat([empty, pos]),
                          "pooled_prompt_embeds": torch.cat([empty_pooled, pooled])}}
        first = dict(prompt_embeds=pos, negative_prompt_embeds=neg if 0 in active else empty,
                     pooled_prompt_embeds=pooled,
                     negative_pooled_prompt_embeds=neg_pooled if 0 in active else empty_pooled)
    evaluations = 2 * steps - 1 if second_order else steps

    def callback(p, i, t, kwargs):
        return dict(embeds[(i + 1) * steps // evaluations in active])  # the pipeline pops from it

    ref = pipe(num_inference_steps=steps, guidance_scale=6.0, generator=gen(5), output_type="latent",
               callback_on_step_end=callback, callback_on_step_end_tensor_inputs=list(embeds[True]), **first,
               **SIZE).images
    close(out.images, ref)


def test_v_prediction_pipelines_sd2_style(sd_pipe):
    """A v-prediction scheduler config (SD 2.x): off == the pipeline's output, an empty window == its empty
    negative, and DNG runs (its posterior reads the v frame)."""
    from diffusers import EulerDiscreteScheduler

    from negguide.generate import NegGuidePipeline

    sched = EulerDiscreteScheduler.from_config(sd_pipe.scheduler.config, prediction_type="v_prediction")
    ng = NegGuidePipeline.from_pipe(sd_pipe, scheduler=sched)
    ng.set_progress_bar_config(disable=True)
    close(latents(ng, negative_prompt=NEGATIVE, guidance_scale=6.0),
          latents(ng.pipe, negative_prompt=NEGATIVE, guidance_scale=6.0))
    close(latents(ng, negative_prompt=NEGATIVE, mode="windowed", window=StepWindow.never(), guidance_scale=6.0),
          latents(ng.pipe, negative_prompt=None, guidance_scale=6.0))
    out = ng(PROMPT, NEGATIVE, mode="dng", dng={"temperature": 1.0}, num_inference_steps=STEPS, generator=gen(7),
             output_type="latent", **SIZE)
    assert torch.isfinite(out.images).all() and out.lambdas.shape == (STEPS, 1)
