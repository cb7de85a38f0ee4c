"""Every sampler ComfyUI a125cd84 ships gets the right DNG tracker (ancestral/SDE: transition likelihood;
deterministic: probability flow), from the SAMPLER object the way comfy.samplers builds it."""

import types

import pytest
from sampler_families import DETERMINISTIC, STOCHASTIC, expected_tracker

from negguide.configs import DNGConfig
from negguide_comfyui.sampler_kind import sampler_info, sampler_name


def comfy_sampler(name: str, **options):
    """A KSAMPLER as comfy.samplers.sampler_object(name) builds it: the function it runs and its options."""
    function = {"ddim": "sample_euler", "uni_pc": "sample_unipc", "uni_pc_bh2": "sample_unipc_bh2",
                "dpm_fast": "dpm_fast_function", "dpm_adaptive": "dpm_adaptive_function"}.get(name, f"sample_{name}")
    return types.SimpleNamespace(sampler_function=types.SimpleNamespace(__name__=function), extra_options=options)


@pytest.mark.parametrize("name", STOCHASTIC + DETERMINISTIC)
def test_every_shipped_sampler_gets_its_tracker(name):
    info = sampler_info(comfy_sampler(name), [14.6, 3.0, 0.5])
    assert DNGConfig().resolved_tracker(info) == expected_tracker(name)
    assert sampler_name(comfy_sampler(name)) == ("euler" if name == "ddim" else name)


def test_sampler_node_options_decide():
    assert not sampler_info(comfy_sampler("euler_ancestral", eta=0.0, s_noise=1.0)).injects_noise
    assert not sampler_info(comfy_sampler("er_sde", s_noise=0.0)).injects_noise  # SamplerER_SDE "ODE"
    assert sampler_info(comfy_sampler("dpm_adaptive", eta=0.5)).injects_noise
    assert sampler_info(comfy_sampler("dpmpp_2m_sde", eta=0.5)).eta == 0.5
    middle = comfy_sampler("sa_solver", tau_func=lambda s: 1.0 if 1.0 <= s <= 5.0 else 0.0)
    assert sampler_info(middle, [14.6, 3.0, 0.5]).injects_noise
    assert not sampler_info(middle, [14.6, 0.5]).injects_noise  # SamplerSASolver at eta 0 or outside the interval
