"""The Python API in diffusers' style: from_pipe shares modules, output types, generators, callbacks, the output
record and settings, and clear errors for bad input before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT, SIZE, close, gen, wrap

from negguide.checks import SettingsError
from negguide.generate import (
    DNGConfig,
    GuidanceSpec,
    NegGuideOutput,
    NegGuidePipeline,
    StepWindow,
    UnsupportedPipeline,
    UnsupportedScheduler,
)


def test_from_pipe_shares_modules_and_leaves_the_original_scheduler(sd_pipe):
    plain = NegGuidePipeline.from_pipe(sd_pipe)
    assert plain.pipe is sd_pipe and plain.family.denoiser is sd_pipe.unet
    other = wrap(sd_pipe, "dpmpp_2m")
    assert other.pipe.unet is sd_pipe.unet and other.pipe.text_encoder is sd_pipe.text_encoder
    assert type(sd_pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert type(other.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert sd_pipe.unet.dtype == torch.float32


def test_from_pipe_keeps_a_half_precision_pipelines_dtype(sd_pipe):
    import copy

    half = copy.deepcopy(sd_pipe).to(torch.float16)
    other = NegGuidePipeline.from_pipe(half, scheduler=half.scheduler)
    assert half.unet.dtype == other.dtype == torch.float16  # diffusers' from_pipe alone would cast to float32


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_output_types_are_diffusers(sd_pipe, output_type):
    ng = wrap(sd_pipe)
    kw = dict(num_inference_steps=2, num_images_per_prompt=2, **SIZE)
    out = ng(PROMPT, NEGATIVE, generator=gen(1, 2), output_type=output_type, **kw)
    ref = ng(PROMPT, NEGATIVE, generator=gen(1, 2), output_type="np", **kw).images
    assert isinstance(out, NegGuideOutput) and len(out.images) == 2
    if output_type == "pil":
        assert out.images[0].size == (16, 16)
        np.testing.assert_array_equal(np.asarray(out.images[1]), (ref[1] * 255).round().astype(np.uint8))
    elif output_type == "np":
        assert out.images.shape == (2, 16, 16, 3) and out.images.dtype == np.float32
    elif output_type == "pt":
        assert out.images.shape == (2, 3, 16, 16)
        close(out.images.permute(0, 2, 3, 1).numpy(), ref, atol=1e-6)
    else:
        assert out.images.shape == (2, 4, 8, 8)
    images, records = ng(PROMPT, num_inference_steps=2, generator=gen(1), output_type="np", return_dict=False,
                         **SIZE)
    assert images.shape == (1, 16, 16, 3) and len(records) == 2


def test_a_single_generator_reproduces_and_defaults_apply(sd_pipe):
    ng = wrap(sd_pipe)
    a = ng(PROMPT, num_inference_steps=2, generator=gen(4), output_type="latent", **SIZE)
    b = ng(PROMPT, num_inference_steps=2, generator=gen(4), output_type="latent", **SIZE)
    assert torch.equal(a.images, b.images)
    assert a.settings["guidance"]["cfg_scale"] == 7.5 and a.settings["seeds"] == [4]
    out = ng(PROMPT, num_inference_steps=1, output_type="latent")  # the family's default size: 8x8 latents
    assert out.images.shape == (1, 4, 8, 8)


def test_guidance_spec_or_mode_arguments(sd_pipe):
    ng = wrap(sd_pipe)
    spec = GuidanceSpec("dng", 4.0, dng=DNGConfig(lambda0=2.0))
    kw = dict(num_inference_steps=3, output_type="latent", **SIZE)
    a = ng(PROMPT, NEGATIVE, guidance=spec, generator=gen(2), **kw)
    b = ng(PROMPT, NEGATIVE, mode="dng", guidance_scale=4.0, dng={"lambda0": 2.0}, generator=gen(2), **kw)
    assert torch.equal(a.images, b.images) and a.records == b.records
    assert ng.guidance_spec("dng", 4.0, dng=DNGConfig(lambda0=2.0)) == spec
    with pytest.raises(ValueError, match="either guidance=GuidanceSpec"):
        ng(PROMPT, guidance=spec, mode="dns", **kw)


def test_settings_and_records_are_json(sd_pipe):
    out = wrap(sd_pipe, "euler_a")(PROMPT, NEGATIVE, mode="dng", window=None, num_inference_steps=3,
                                   generator=gen(0, 1), output_type="latent", **SIZE)
    text = json.dumps({"settings": out.settings, "records": out.records})
    assert '"tracker": "transition"' in text and out.settings["sampler"] == "Euler a"
    assert out.lambdas.shape == out.posteriors.shape == (3, 1)
    assert [r["step"] for r in out.records] == [0, 1, 2]


def test_windowed_defaults_to_ban_et_al_and_takes_tuples(sd_pipe):
    ng = wrap(sd_pipe)
    kw = dict(num_inference_steps=30, output_type="latent", height=8, width=8)
    out = ng(PROMPT, NEGATIVE, mode="windowed", generator=gen(0), **kw)
    assert [i for i, r in enumerate(out.records) if r["negative_active"]] == list(range(4, 15))  # steps 5-15
    out = ng(PROMPT, NEGATIVE, mode="windowed", window=(3, 4), generator=gen(0), **{**kw, "num_inference_steps": 5})
    assert [r["negative_active"] for r in out.records] == [False, False, True, True, False]


def test_step_callback_sees_and_may_replace_latents(sd_pipe):
    ng, seen = wrap(sd_pipe), []

    def callback(pipe, i, t, kwargs):
        seen.append((i, kwargs["latents"].shape))
        return {"latents": kwargs["latents"] * 0} if i == 1 else None

    out = ng(PROMPT, num_inference_steps=3, generator=gen(0), output_type="latent", callback_on_step_end=callback,
             **SIZE)
    assert [i for i, _ in seen] == [0, 1, 2] and torch.isfinite(out.images).all()


@pytest.mark.parametrize("kwargs, error, needle", [
    (dict(mode="dng", dng={"lambda0": -1, "prior": 2}), SettingsError, "lambda0 must be in"),
    (dict(mode="sharpen"), SettingsError, "mode must be one of"),
    (dict(mode="off", window=(1, 3)), SettingsError, "takes no window"),
    (dict(mode="dns", window=StepWindow(1, 3)), SettingsError, "window applies"),
    (dict(mode="dng", dng={"lamda0": 2}), SettingsError, "DNG settings"),
    (dict(guidance_scale=float("nan")), SettingsError, "CFG scale"),
    (dict(height=13), ValueError, "multiples of 2"),
    (dict(output_type="jpeg"), ValueError, "output_type"),
    (dict(generator=[torch.Generator()] * 3), ValueError, "3 generators for 1 images"),
    (dict(num_inference_steps=0), ValueError, "num_inference_steps"),
])
def test_bad_input_is_refused_before_any_model_call(sd_pipe, kwargs, error, needle, monkeypatch):
    ng = wrap(sd_pipe)
    monkeypatch.setattr(ng.family, "predict", lambda *a: pytest.fail("the model was called"))
    monkeypatch.setattr(ng.pipe, "encode_prompt", lambda *a, **k: pytest.fail("the text encoder was called"))
    with pytest.raises(error, match=needle):
        ng(PROMPT, NEGATIVE, **{"num_inference_steps": 2, **kwargs})


@pytest.mark.parametrize("mode", ["windowed", "np3", "dng", "sld", "perp_neg"])
def test_modes_that_use_a_negative_prompt_need_one(sd_pipe, mode):
    with pytest.raises(ValueError, match="pass negative_prompt"):
        wrap(sd_pipe)(PROMPT, mode=mode, num_inference_steps=2, **SIZE)


def test_settings_errors_list_every_problem(sd_pipe):
    with pytest.raises(SettingsError) as err:
        wrap(sd_pipe)(PROMPT, mode="dng", dng={"lambda0": -1.0, "prior": 2.0, "tracker": "magic"})
    assert len(err.value.problems) >= 3


def test_sld_on_a_flow_model_is_refused_by_the_core(sd3_pipe, monkeypatch):
    ng = wrap(sd3_pipe)
    monkeypatch.setattr(ng.pipe, "encode_prompt", lambda *a, **k: pytest.fail("the text encoder was called"))
    with pytest.raises(ValueError, match="rectified-flow"):
        ng(PROMPT, NEGATIVE, mode="sld", num_inference_steps=2, **SIZE)


def test_schedulers_that_do_not_fit_are_refused(sd_pipe, sd3_pipe):
    with pytest.raises(UnsupportedScheduler, match="does not fit"):
        wrap(sd3_pipe).set_scheduler("euler")
    with pytest.raises(UnsupportedScheduler, match="does not fit"):
        wrap(sd_pipe).set_scheduler("flow_euler")
    flow = wrap(sd3_pipe, "flow_euler")  # a new pipeline object: the session's keeps its scheduler
    flow.scheduler = type(flow.scheduler).from_config(flow.scheduler.config, stochastic_sampling=True)
    with pytest.raises(UnsupportedScheduler, match="transition tracker models the ancestral step"):
        flow(PROMPT, NEGATIVE, mode="dng", num_inference_steps=2, **SIZE)
    out = flow(PROMPT, NEGATIVE, mode="dng", dng={"tracker": "flow-moment"}, num_inference_steps=2,
               output_type="latent", generator=gen(0), **SIZE)
    assert out.tracker == "flow-moment"


def test_unsupported_pipelines_are_refused(sd_pipe):
    from diffusers import StableDiffusionImg2ImgPipeline

    img2img = StableDiffusionImg2ImgPipeline(**sd_pipe.components)
    with pytest.raises(UnsupportedPipeline, match="StableDiffusionImg2ImgPipeline is not supported"):
        NegGuidePipeline(img2img)
