"""Every mode through NegGuidePipeline on every family: the first step equals the mode's rule applied to branch
predictions computed independently here (the pipeline's encode_prompt and denoiser, one branch per call), and
every model evaluation is ONE batched denoiser call."""

from __future__ import annotations

import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT, SIZE, close, gen, wrap

from negguide import guidance as G
from negguide.sld import SafeLatentDiffusion, SLDConfig

W = 6.0
DNG = {"lambda0": 3.0, "prior": 0.2, "flow_start": "prior"}  # the first step's lambda is the prior's
MODES = {
    "off": (dict(), lambda p, e, n: G.cfg(n, p, W)),
    "np3": (dict(), lambda p, e, n: G.negative_prompt_3term(e, p, n, W)),
    "dns": (dict(dns_scale=2.5), lambda p, e, n: G.diffusion_negative(e, p, 2.5)),
    "dng": (dict(dng=DNG), lambda p, e, n: G.dng_text(e, p, n, W, 3.0 * 0.2 / 0.8)),  # lambda0 p0 / (1 - p0)
    "perp_neg": (dict(perp_neg_scale=1.5), lambda p, e, n: G.perp_neg(e, p, n, W, 1.5)),
    "sld": (dict(sld=SLDConfig(threshold=0.5)), lambda p, e, n: SafeLatentDiffusion(SLDConfig(threshold=0.5))(
        e, p, n, W, step=0)),
}


def branch_predictions(pipe, family, x_in, t):
    """Raw denoiser outputs for the positive, empty (the pipeline's negative_prompt=None) and negative prompts."""
    h, w = SIZE["height"], SIZE["width"]
    if family == "sd":
        pos, neg = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
        _, empty = pipe.encode_prompt(PROMPT, "cpu", 1, True, None)
        run = lambda c, _: pipe.unet(x_in, t, encoder_hidden_states=c).sample  # noqa: E731
        conds = [(pos, None), (empty, None), (neg, None)]
    elif family == "sdxl":
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPT, device="cpu", negative_prompt=NEGATIVE)
        _, empty, _, empty_pooled = pipe.encode_prompt(PROMPT, device="cpu", negative_prompt=None)
        assert not empty.any() and not empty_pooled.any()  # force_zeros_for_empty_prompt
        ids = pipe._get_add_time_ids((h, w), (0, 0), (h, w), dtype=pos.dtype,
                                     text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        run = lambda c, p: pipe.unet(x_in, t, encoder_hidden_states=c,  # noqa: E731
                                     added_cond_kwargs={"text_embeds": p, "time_ids": ids}).sample
        conds = [(pos, pooled), (empty, empty_pooled), (neg, neg_pooled)]
    else:
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt=NEGATIVE)
        _, empty, _, empty_pooled = pipe.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt=None)
        run = lambda c, p: pipe.transformer(hidden_states=x_in, timestep=t.expand(1), encoder_hidden_states=c,  # noqa: E731
                                            pooled_projections=p).sample
        conds = [(pos, pooled), (empty, empty_pooled), (neg, neg_pooled)]
    return [run(c, p) for c, p in conds]


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("mode", list(MODES))
@torch.no_grad()
def test_first_step_is_the_modes_rule_on_independently_computed_branches(pipes, family, mode):
    if mode == "sld" and family == "sd3":
        pytest.skip("SLD has no meaning for a flow model (the core refuses it; see test_api)")
    ng = wrap(pipes(family), "flow_euler" if family == "sd3" else "euler")
    options, rule = MODES[mode]
    out = ng(PROMPT, NEGATIVE, mode=mode, guidance_scale=W, num_inference_steps=1, generator=gen(3),
             output_type="latent", **options, **SIZE)

    pipe, scheduler = ng.pipe, ng.pipe.scheduler
    latents = pipe.prepare_latents(1, 4, SIZE["height"], SIZE["width"], torch.float32, "cpu", gen(3))
    ng.family.set_timesteps(1, "cpu", (8, 8))
    t = scheduler.timesteps[0]
    x_in = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
    p, e, n = branch_predictions(pipe, family, x_in, t)
    expected = scheduler.step(rule(p, e, n), t, latents).prev_sample
    close(out.images, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("mode, options", [("off", {}), ("windowed", {}), ("np3", {}), ("dns", {}),
                                           ("dng", {"tracker": "transition"}), ("dng", {"tracker": "flow-moment"}),
                                           ("dng", {"tracker": "flow-hutchinson", "probe_pairs": 2}),
                                           ("perp_neg", {}), ("sld", {})])
def test_every_mode_makes_one_batched_call_per_evaluation(pipes, family, mode, options, monkeypatch):
    if mode == "sld" and family == "sd3":
        pytest.skip("SLD has no meaning for a flow model")
    ng = wrap(pipes(family), "flow_heun" if family == "sd3" else "heun")
    calls = []
    predict = ng.family.predict
    monkeypatch.setattr(ng.family, "predict", lambda x, *a: calls.append(x.shape[0]) or predict(x, *a))
    kw = {"dng": options} if mode == "dng" else {}
    out = ng([PROMPT, "a blue boat"], NEGATIVE, mode=mode, num_inference_steps=3, generator=gen(0, 2),
             output_type="latent", **kw, **SIZE)
    assert len(calls) == len(ng.pipe.scheduler.timesteps) == 5  # Heun: 2 n - 1 evaluations, one call each
    assert all(rows % 2 == 0 and rows >= 4 for rows in calls)  # whole row groups of B = 2
    assert len(out.records) == 3 and torch.isfinite(out.images).all()
    if mode == "dng":
        # a flow model's first step is at t = 1 (pure noise): no evidence, no posterior update, no record
        informative = 2 if family == "sd3" else 3
        assert out.lambdas.shape == (informative, 2) and out.tracker.startswith(options["tracker"])
        if options["tracker"] == "flow-hutchinson":  # probes at the first evaluation of each informative step
            first = 2 if family == "sd3" else 0
            assert calls[first] == 2 * (3 + 2 * 2) and calls[first + 1] == 2 * 3
        # the cost the run reports: the negative row, plus 2 pairs x 2 branches at every informative step
        probing = options["tracker"] == "flow-hutchinson"
        assert out.settings["average_extra_rows"] == (1.0 + 4.0 if probing else 1.0)


@pytest.mark.parametrize("mode, options, expected", [
    ("off", {}, ["positive", "negative"]), ("windowed", {}, ["positive", "negative", "empty"]),
    ("dns", {}, ["positive", "empty"]), ("dng", {"dng": {"lambda0": 0.0}}, ["positive", "empty"]),
    ("dng", {}, ["positive", "negative", "empty"]),
])
def test_text_is_encoded_before_sampling_and_only_what_the_mode_uses(sd_pipe, monkeypatch, mode, options, expected):
    """With model CPU offload a text encoder called mid-loop would swap the UNet out: every branch is encoded
    before the first denoiser call, and none that the run never evaluates."""
    ng = wrap(sd_pipe)
    events = []
    encode = ng.pipe.encode_prompt
    monkeypatch.setattr(ng.pipe, "encode_prompt", lambda *a, **k: events.append("encode") or encode(*a, **k))
    predict = ng.family.predict
    monkeypatch.setattr(ng.family, "predict", lambda *a: events.append("denoise") or predict(*a))
    ng(PROMPT, NEGATIVE, mode=mode, num_inference_steps=30, generator=gen(0), output_type="latent", height=8, width=8,
       **options)
    first = events.index("denoise")
    assert "encode" not in events[first:]
    assert events[:first].count("encode") == len(expected)
