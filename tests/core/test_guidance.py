import pytest
import torch
from conversions import denoised_from_eps, eps_from_denoised, eps_from_x0_vp, x0_from_eps_vp

from negguide import guidance as G
from negguide.configs import SLDConfig
from negguide.sld import SafeLatentDiffusion


def preds(n=3, shape=(2, 4, 8, 8), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) for _ in range(n)]


RULES = {
    "cfg": lambda e, p, n: G.cfg(e, p, 7.0),
    "np2": lambda e, p, n: G.cfg(n, p, 7.0),  # the negative prompt in CFG's unconditional slot
    "np3": lambda e, p, n: G.negative_prompt_3term(e, p, n, 7.0),
    "dns": lambda e, p, n: G.diffusion_negative(e, p, 3.0),
    "dng": lambda e, p, n: G.dng(e, n, torch.tensor([0.5, 4.0], dtype=e.dtype)),
    "dng_text": lambda e, p, n: G.dng_text(e, p, n, 7.0, torch.tensor([0.5, 4.0], dtype=e.dtype)),
    "perp_neg": lambda e, p, n: G.perp_neg(e, p, n, 7.0, 1.5),
}


@pytest.mark.parametrize("rule", [k for k in RULES if k != "perp_neg"])
def test_rules_commute_with_eps_x0_conversion(rule):
    """Affine rules with weights summing to one give the same result in eps and in x0 space."""
    x = preds(1, seed=9)[0]
    sigma = torch.tensor([0.7, 3.0], dtype=torch.float64)
    e, p, n = preds()
    in_eps = RULES[rule](e, p, n)
    in_x0 = RULES[rule](*(denoised_from_eps(x, t, sigma) for t in (e, p, n)))
    torch.testing.assert_close(eps_from_denoised(x, in_x0, sigma), in_eps, rtol=1e-10, atol=1e-10)


def test_vp_conversions_round_trip():
    x, eps = preds(2)
    abar = torch.tensor([0.3, 0.9], dtype=torch.float64)
    torch.testing.assert_close(eps_from_x0_vp(x, x0_from_eps_vp(x, eps, abar), abar), eps)


def test_negative_prompt_forms():
    e, p, n = preds()
    torch.testing.assert_close(G.cfg(n, p, 5.0), n + 5.0 * (p - n))
    torch.testing.assert_close(G.negative_prompt_3term(e, p, n, 5.0), e + 5.0 * (p - n))
    # with an empty negative, both forms are plain CFG
    torch.testing.assert_close(G.negative_prompt_3term(e, p, e, 5.0), G.cfg(e, p, 5.0))


def test_dns_is_swapped_cfg_with_s_equal_w_minus_one():
    e, p, _ = preds()
    w = 7.5
    swapped = G.cfg(p, e, w)  # positive = empty prompt, negative = the prompt
    torch.testing.assert_close(G.diffusion_negative(e, p, w - 1.0), swapped)
    torch.testing.assert_close(G.diffusion_negative(e, p, 2.0), e + 2.0 * (e - p))


def test_dng_scales_are_per_image():
    u, c = preds(2)
    lam = torch.tensor([0.0, 3.0], dtype=torch.float64)
    out = G.dng(u, c, lam)
    torch.testing.assert_close(out[0], u[0])
    torch.testing.assert_close(out[1], u[1] - 3.0 * (c[1] - u[1]))
    with pytest.raises(ValueError, match="batch"):
        G.dng(u, c, torch.ones(3))


def test_dng_text_reduces_to_cfg_when_lambda_is_zero():
    e, p, n = preds()
    torch.testing.assert_close(G.dng_text(e, p, n, 7.0, 0.0), G.cfg(e, p, 7.0))


def test_perp_neg_negative_equal_to_positive_acts_like_empty_negative():
    e, p, _ = preds()
    torch.testing.assert_close(G.perp_neg(e, p, p, 7.0, 2.0), G.cfg(e, p, 7.0))


def test_perp_neg_removes_only_the_perpendicular_part():
    e = torch.zeros(1, 2, dtype=torch.float64)
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    n = torch.tensor([[3.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(G.perp_neg(e, p, n, 1.0, 1.0), torch.tensor([[1.0, -2.0]], dtype=torch.float64))


def test_perp_neg_zero_positive_direction_is_finite():
    e, _, n = preds()
    out = G.perp_neg(e, e.clone(), n, 7.0, 1.0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rule", list(RULES))
def test_huge_scales_never_give_inf_or_nan(rule, dtype):
    e, p, n = (t * 100 for t in preds(dtype=dtype))
    big = {"cfg": lambda: G.cfg(e, p, 1e30), "np2": lambda: G.cfg(n, p, 1e30),
           "np3": lambda: G.negative_prompt_3term(e, p, n, 1e30), "dns": lambda: G.diffusion_negative(e, p, 1e30),
           "dng": lambda: G.dng(e, n, 1e30), "dng_text": lambda: G.dng_text(e, p, n, 1e30, 1e30),
           "perp_neg": lambda: G.perp_neg(e, p, n, 1e30, 1e30)}[rule]()
    assert big.dtype == dtype
    if dtype != torch.float32:  # float32 inputs are combined in float32; 1e30 * 100 still fits
        assert torch.isfinite(big).all()
    assert not torch.isnan(big).any()


def test_shape_mismatch_is_a_clear_error():
    a, b = torch.zeros(2, 4), torch.zeros(2, 5)
    with pytest.raises(ValueError, match="shapes differ"):
        G.cfg(a, b, 7.0)


def test_sld_matches_the_paper_on_hand_computed_pixels():
    """Class removal (positive = unconditional), the paper's defaults (s_s 100, threshold 0.04, beta_m 0.2, s_m 0.1),
    three pixels: eps_p - eps_S = 0.1 is above the threshold (no correction), -0.005 gives mu = 0.5, -0.02 clamps
    mu at 1. Step 1: gamma = mu (eps_S - eps_u) = (0, 0.0025, 0.02), momentum 0.8 gamma; step 2 adds 0.1 of it:
    gamma = (0, 0.0027, 0.0216). The guided prediction is eps_u - w gamma."""
    u = torch.zeros(1, 3, dtype=torch.float64)
    n = torch.tensor([[-0.1, 0.005, 0.02]], dtype=torch.float64)
    sld = SafeLatentDiffusion(SLDConfig())
    torch.testing.assert_close(sld(u, u, n, 0.5), torch.tensor([[0.0, -0.00125, -0.01]], dtype=torch.float64))
    torch.testing.assert_close(sld(u, u, n, 0.5), torch.tensor([[0.0, -0.00135, -0.0108]], dtype=torch.float64))


def test_sld_warmup_delays_the_correction_but_not_the_momentum():
    """During the warm-up steps the prediction is plain CFG while the momentum builds up as without a warm-up: from
    the first step after it, the warmed-up SLD equals one that corrected from the start."""
    u, p, n = (0.02 * t for t in preds(3, shape=(1, 8)))
    warm, eager = SafeLatentDiffusion(SLDConfig(warmup_steps=2)), SafeLatentDiffusion(SLDConfig())
    for step in range(4):
        delayed, corrected = warm(u, p, n, 7.0), eager(u, p, n, 7.0)
        if step < 2:
            torch.testing.assert_close(delayed, G.cfg(u, p, 7.0))
            assert not torch.allclose(corrected, delayed)
        else:
            torch.testing.assert_close(delayed, corrected)


@pytest.mark.parametrize("bad", [dict(beta_m=1.0), dict(s_s=-1), dict(warmup_steps=-1)])
def test_sld_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        SLDConfig(**bad)


def test_dng_term_is_what_dng_text_adds_to_cfg():
    e, p, n = preds()
    lam = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(G.cfg(e, p, 7.0) + G.dng_term(p, n, lam), G.dng_text(e, p, n, 7.0, lam))
