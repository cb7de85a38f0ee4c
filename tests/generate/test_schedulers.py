"""Scheduler frames: for every supported deterministic scheduler, an oracle model whose data is x0 = 0 (it
predicts the initial noise eps0 exactly, so the state stays ``b_t eps0`` along the whole run) checks that the
noise level the front-end hands the core gives the model input's actual scaling at every evaluation, and at the
end. Plus the sampler families (stochastic or not) and refusals."""

from __future__ import annotations

import pytest
import torch
from tiny_pipelines import SD_BETAS

from negguide.generate.schedulers import SCHEDULERS, SchedulerAdapter, UnsupportedScheduler, make_scheduler

DETERMINISTIC = ["euler", "heun", "lms", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "unipc", "deis",
                 "flow_euler", "flow_heun", "DPMSolverSinglestepScheduler"]
STOCHASTIC = ["euler_a", "ddpm", "dpmpp_2m_sde", "dpmpp_2m_sde_karras"]


def base(flow: bool):
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0) if flow else EulerDiscreteScheduler(**SD_BETAS)


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_the_noise_level_is_the_model_inputs_actual_scaling(name, prediction):
    flow = name.startswith("flow")
    if (flow or name == "pndm") and prediction == "sample":
        pytest.skip("flow schedulers predict the velocity; PNDM takes eps or v only")
    if name in SCHEDULERS:
        scheduler = make_scheduler(name, base(flow))
    else:  # mapped without a friendly name: a model may ship it
        scheduler = getattr(__import__("diffusers"), name).from_config(base(flow).config)
    if not flow:
        scheduler = type(scheduler).from_config(scheduler.config, prediction_type=prediction)
    adapter = SchedulerAdapter.of(scheduler, flow)
    eps0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    output = torch.zeros_like(eps0) if prediction == "sample" else eps0  # flow: u = eps - x0 = eps0
    steps = 7
    scheduler.set_timesteps(steps)
    # start exactly on the oracle's path (diffusers starts at unit-variance noise, which is off it by ~0.2%): the
    # first level sets the start; every later one must follow where the scheduler's own updates take the state
    first = adapter.frame.noise_level(adapter.level(0, scheduler.timesteps[0]), 2)
    latents = float(first.sigma[0] if adapter.kind == "ve_sigma" else first.b[0]) * eps0
    seen_b = []
    for k, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
        noise = adapter.frame.noise_level(adapter.level(k, t), 2)
        # diffusers' schedulers keep sigmas / alphas in float32: agreement to ~1e-5 relative is exact here
        torch.testing.assert_close(x_in, noise.b[:, None, None, None] * eps0, rtol=5e-5, atol=1e-5)
        if noise.informative():
            torch.testing.assert_close(adapter.frame.denoised(output, x_in, noise), torch.zeros_like(eps0),
                                       rtol=0, atol=1e-4 * max(1.0, float(noise.sigma[0])))
        seen_b.append(float(noise.b[0]))
        latents = scheduler.step(output, t, latents, return_dict=False)[0]
    x, level = adapter.final(latents)
    b_final = 0.0 if level is None else float(adapter.frame.noise_level(level, 2).b[0])
    torch.testing.assert_close(x, b_final * eps0, rtol=1e-5, atol=1e-5)
    assert seen_b[0] > seen_b[-1] > b_final  # decreasing noise
    assert len(adapter.clock(steps, scheduler.timesteps).__dict__) and len(scheduler.timesteps) >= steps


@pytest.mark.parametrize("name", [n for n in DETERMINISTIC if n in SCHEDULERS] + STOCHASTIC)
def test_stochastic_schedulers_are_named_so_for_the_core(name):
    flow = name.startswith("flow")
    adapter = SchedulerAdapter.of(make_scheduler(name, base(flow)), flow)
    assert adapter.sampler.injects_noise == (name in STOCHASTIC)


def test_ddim_is_stochastic_exactly_when_eta_is_positive():
    ddim = make_scheduler("ddim", base(False))
    assert not SchedulerAdapter.of(ddim, False, eta=0.0).sampler.injects_noise
    info = SchedulerAdapter.of(ddim, False, eta=0.5).sampler
    assert info.injects_noise and info.eta == 0.5


def test_every_friendly_name_builds_and_maps():
    for name, (cls, _, _) in SCHEDULERS.items():
        flow = name.startswith("flow")
        scheduler = make_scheduler(name, base(flow))
        assert type(scheduler).__name__ == cls
        SchedulerAdapter.of(scheduler, flow)


@pytest.mark.parametrize("make, flow, needle", [
    (lambda: make_scheduler("euler", base(True)), True, "does not fit a rectified-flow model"),
    (lambda: make_scheduler("flow_euler", base(False)), False, "does not fit a diffusion"),
    (lambda: __import__("diffusers").KDPM2DiscreteScheduler(**SD_BETAS), False, "not supported"),
    (lambda: __import__("diffusers").PNDMScheduler(**SD_BETAS), False, "skip_prk_steps"),
])
def test_unsupported_schedulers_are_refused_with_a_reason(make, flow, needle):
    with pytest.raises(UnsupportedScheduler, match=needle):
        SchedulerAdapter.of(make(), flow)


def test_unknown_friendly_name():
    with pytest.raises(UnsupportedScheduler, match="unknown scheduler 'dpm_fast'"):
        make_scheduler("dpm_fast", base(False))


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m_karras", "ddim", "unipc"])
def test_v_prediction_frames_follow_the_scheduler(name):
    """SD 2.x-style v-prediction: the oracle outputs v = a eps0 (x0 = 0), with ``a`` from the scheduler's own
    tables; the front-end's frame must read D = 0 from it at every evaluation."""
    scheduler = make_scheduler(name, base(False))
    scheduler = type(scheduler).from_config(scheduler.config, prediction_type="v_prediction")
    adapter = SchedulerAdapter.of(scheduler, False)
    assert adapter.frame.prediction == "v"
    eps0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scheduler.set_timesteps(6)
    first = adapter.frame.noise_level(adapter.level(0, scheduler.timesteps[0]), 2)
    latents = float(first.sigma[0] if adapter.kind == "ve_sigma" else first.b[0]) * eps0
    for k, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        if hasattr(scheduler, "sigmas"):
            a = 1.0 / (1.0 + float(scheduler.sigmas[adapter.index(k)]) ** 2) ** 0.5  # the scheduler's own sigma
        else:
            a = float(scheduler.alphas_cumprod[int(t)]) ** 0.5
        v = a * eps0
        noise = adapter.frame.noise_level(adapter.level(k, t), 2)
        torch.testing.assert_close(adapter.frame.denoised(v, x_in, noise), torch.zeros_like(eps0), rtol=0, atol=1e-4)
        latents = scheduler.step(v, t, latents, return_dict=False)[0]
