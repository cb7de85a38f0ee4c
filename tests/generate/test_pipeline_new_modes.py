"""The two newer modes through NegGuidePipeline on the tiny pipelines: the adaptive window without a signal is
the windowed mode bit for bit, with a signal it records per image when the negative acted, and constant negative
guidance at lambda = 0 is plain CFG bit for bit."""

from __future__ import annotations

import pytest
import torch
from generate_helpers import PROMPT, SIZE, gen, wrap

NEGATIVE = "trees"


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_adaptive_without_signal_is_the_windowed_mode(pipes, family):
    pipe = wrap(pipes(family))
    kw = dict(num_inference_steps=6, output_type="pt", window=(2, 4), **SIZE)
    windowed = pipe([PROMPT] * 2, NEGATIVE, mode="windowed", generator=gen(3, 2), **kw)
    adaptive = pipe([PROMPT] * 2, NEGATIVE, mode="adaptive", adaptive={"signal": "none"}, generator=gen(3, 2), **kw)
    assert torch.equal(windowed.images, adaptive.images)


def test_adaptive_with_a_signal_records_each_images_start(sd_pipe):
    pipe = wrap(sd_pipe)
    out = pipe([PROMPT] * 2, NEGATIVE, mode="adaptive", adaptive={"signal": "alignment", "threshold": -1.0},
               num_inference_steps=6, generator=gen(4, 2), output_type="pt", **SIZE)
    acting = [r["negative_acting"] for r in out.records if "negative_acting" in r]
    assert acting and all(a == [True, True] for a in acting)  # fires at the window's first step
    assert out.settings["guidance"]["adaptive"] == {"signal": "alignment", "threshold": -1.0}
    assert out.settings["mode_label"] == "adaptive window"


def test_constant_negative_at_zero_is_cfg(sd_pipe):
    pipe = wrap(sd_pipe)
    kw = dict(num_inference_steps=4, output_type="pt", **SIZE)
    cfg = pipe(PROMPT, None, mode="off", generator=gen(5), **kw)
    zero = pipe(PROMPT, NEGATIVE, mode="np_lambda", negative_scale=0.0, generator=gen(5), **kw)
    torch.testing.assert_close(zero.images, cfg.images, rtol=0, atol=1e-6)
    strong = pipe(PROMPT, NEGATIVE, mode="np_lambda", negative_scale=3.0, generator=gen(5), **kw)
    assert not torch.allclose(strong.images, cfg.images)
