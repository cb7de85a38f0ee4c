"""Per-image state: with one generator per image, image i of a batch equals a single run with generator i,
including DNG's posterior and lambda per step (the batch shares nothing but the model calls)."""

from __future__ import annotations

import copy

import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT, SIZE, close, gen, wrap


@pytest.fixture(scope="module")
def pipes64(pipes):
    """float64 copies: in float32 the CPU kernels' results depend on the batch size (diffusers' own pipeline
    deviates by ~3e-6 of the latents' range between a batch and single runs), which would hide a real leak
    between images behind a loose tolerance; in float64 the comparison can be tight."""
    made = {}

    def get(family):
        if family not in made:
            made[family] = copy.deepcopy(pipes(family)).to(torch.float64)
        return made[family]

    return get


CASES = [
    ("sd", "euler_a", "off", None),
    ("sdxl", "euler_a", "off", None),
    ("sd", "euler_a", "dng", {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "p_max": 0.95}),  # transition
    ("sd", "dpmpp_2m_sde", "dng", {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "p_max": 0.95}),
    ("sd", "euler", "dng", {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "tracker": "flow-moment"}),
    ("sd", "ddim", "dng", {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "tracker": "flow-moment"}),
    ("sd3", "flow_euler", "dng", {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "tracker": "flow-moment"}),
    ("sd", "euler_a", "sld", None),
    ("sd", "euler", "perp_neg", None),
]


def _run(ng, mode, dng, prompts, negatives, generators, images_per_prompt=1):
    kw = {"dng": dng} if dng else {}
    return ng(prompts, negatives, mode=mode, num_inference_steps=5, generator=generators, output_type="latent",
              num_images_per_prompt=images_per_prompt, **kw, **SIZE)


@pytest.mark.parametrize("family, scheduler, mode, dng", CASES)
def test_image_i_of_a_batch_is_the_single_run_with_its_generator(pipes64, family, scheduler, mode, dng):
    ng = wrap(pipes64(family), scheduler)
    prompts, negatives = [PROMPT, "a blue boat", "a cat"], [NEGATIVE, "water", "a dog"]
    batch = _run(ng, mode, dng, prompts, negatives, gen(10, 3))
    for i in range(3):
        single = _run(ng, mode, dng, prompts[i], negatives[i], [gen(10 + i)])
        assert batch.images.dtype == torch.float64
        close(batch.images[i], single.images[0], rtol=1e-9, atol=1e-9)
        if dng:
            close(batch.posteriors[:, i], single.posteriors[:, 0], rtol=1e-8, atol=1e-12)
            close(batch.lambdas[:, i], single.lambdas[:, 0], rtol=1e-8, atol=1e-12)
    if dng:
        assert not torch.allclose(batch.posteriors[:, 0], batch.posteriors[:, 1])  # per-image, not shared


def test_images_per_prompt_are_prompt_major_like_diffusers(pipes64):
    ng = wrap(pipes64("sd"), "euler_a")
    batch = _run(ng, "dng", {"lambda0": 2.0}, [PROMPT, "a cat"], [NEGATIVE, "a dog"], gen(20, 4), 2)
    order = [(PROMPT, NEGATIVE), (PROMPT, NEGATIVE), ("a cat", "a dog"), ("a cat", "a dog")]
    for i, (p, n) in enumerate(order):
        close(batch.images[i], _run(ng, "dng", {"lambda0": 2.0}, p, n, [gen(20 + i)]).images[0], rtol=1e-9, atol=1e-9)


def test_hutchinson_probes_are_per_image(pipes64):
    """Each image's probe directions come from its own generator: the Hutchinson tracker too is per image."""
    ng = wrap(pipes64("sd"), "euler")
    dng = {"lambda0": 4.0, "temperature": 1.0, "prior": 0.1, "tracker": "flow-hutchinson"}
    batch = _run(ng, "dng", dng, [PROMPT, "a cat"], [NEGATIVE, "a dog"], gen(30, 2))
    single = _run(ng, "dng", dng, "a cat", "a dog", [gen(31)])
    close(batch.posteriors[:, 1], single.posteriors[:, 0], rtol=1e-8, atol=1e-12)
