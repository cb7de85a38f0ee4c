"""Guidance rules as small pure functions over model predictions.

Every rule here is an affine combination of predictions whose weights sum to one (Perp-Neg included, per
image), so it is valid unchanged for every parametrisation of :mod:`negguide.frames` (x0, eps, v, flow
velocity) at the same state and noise level: no backend needs a conversion here.

Scales (``cfg_scale`` w, ``dns_scale`` s, DNG's ``lam``, ``perp_neg_scale``) are Python floats or per-image
tensors of shape ``[B]``. Half-precision inputs are combined in float32 and the result is clamped to the
input dtype's finite range, so huge scales never turn a finite prediction into inf or NaN.
"""

from __future__ import annotations

import torch

from .tensors import per_image as _per_image


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _finish(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Back to the caller's dtype without overflowing to inf."""
    if out.dtype != like.dtype:
        big = torch.finfo(like.dtype).max
        out = out.clamp(-big, big)
    return out.to(like.dtype)


def _lift(*preds: torch.Tensor) -> list[torch.Tensor]:
    ref = preds[0]
    for p in preds[1:]:
        if p.shape != ref.shape:
            raise ValueError(f"prediction shapes differ: {tuple(ref.shape)} vs {tuple(p.shape)}")
    dt = _compute_dtype(ref)
    return [p.to(dt) for p in preds]


def _scale(v, like: torch.Tensor) -> torch.Tensor:
    return _per_image(v, like)


def cfg(uncond: torch.Tensor, cond: torch.Tensor, cfg_scale) -> torch.Tensor:
    """Classifier-free guidance ``uncond + w (cond - uncond)``, ``w = cfg_scale``."""
    u, c = _lift(uncond, cond)
    return _finish(u + _scale(cfg_scale, u) * (c - u), uncond)


def negative_prompt_3term(empty: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, cfg_scale) -> torch.Tensor:
    """Negative prompting, 3-term form ``eps_empty + w (eps_p - eps_n)`` (Desai & Vasconcelos, Eq. 4)."""
    e, p, n = _lift(empty, pos, neg)
    return _finish(e + _scale(cfg_scale, e) * (p - n), empty)


def diffusion_negative(empty: torch.Tensor, pos: torch.Tensor, dns_scale) -> torch.Tensor:
    """Diffusion-negative sampling ``eps_empty + s (eps_empty - eps_p)`` (Desai & Vasconcelos, Eq. 19).

    Samples what the model considers least like the prompt. 2-term CFG with the prompts swapped
    (positive = empty, negative = prompt) at CFG scale ``w`` is this rule with ``s = w - 1``.
    """
    e, p = _lift(empty, pos)
    return _finish(e + _scale(dns_scale, e) * (e - p), empty)


def dng(uncond: torch.Tensor, forbidden: torch.Tensor, lam) -> torch.Tensor:
    """Dynamic Negative Guidance, class-removal form ``eps_u - lambda (eps_c - eps_u)``
    (Koulischer et al., Eq. 10 / Algorithm 1); ``lambda = lambda0 p / (1 - p)`` per image."""
    u, f = _lift(uncond, forbidden)
    return _finish(u - _scale(lam, u) * (f - u), uncond)


def dng_text(empty: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, cfg_scale, lam) -> torch.Tensor:
    """DNG for text-to-image: ``eps_empty + w (eps_+ - eps_empty) - lambda (eps_- - eps_+)``.

    The positive prediction replaces the unconditional one in the negative term (DNG paper, Sec. 4.2), and
    the posterior that sets ``lambda`` compares the positive and negative branches.
    """
    e, p, n = _lift(empty, pos, neg)
    return _finish(e + _scale(cfg_scale, e) * (p - e) - _scale(lam, e) * (n - p), empty)


def dng_term(pos: torch.Tensor, neg: torch.Tensor, lam) -> torch.Tensor:
    """DNG's negative term alone, ``-lambda (eps_- - eps_+)``, for backends that combine CFG themselves
    (the WebUI's AND prompts and inpainting blends, Forge's cfg function) and only add this on top."""
    p, n = _lift(pos, neg)
    return _finish(-_scale(lam, p) * (n - p), pos)


def _per_image_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def perp_neg(empty: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, cfg_scale, perp_neg_scale) -> torch.Tensor:
    """Perp-Neg (Armandpour et al. 2023): only the part of the negative direction perpendicular to the
    positive one is subtracted, ``eps_e + w (d_p - w_n * perp(d_n, d_p))`` with ``d = eps - eps_e``.

    Per image. Invariant (the ComfyUI fix): a negative equal to the positive has no perpendicular part, so
    it behaves exactly like an empty negative (plain CFG). A zero positive direction projects nothing.
    """
    e, p, n = _lift(empty, pos, neg)
    d_pos, d_neg = p - e, n - e
    norm2 = _per_image_dot(d_pos, d_pos)
    coef = torch.where(norm2 > 0, _per_image_dot(d_neg, d_pos) / norm2.clamp(min=torch.finfo(e.dtype).tiny),
                       torch.zeros_like(norm2))
    perp = d_neg - _per_image(coef, e) * d_pos
    return _finish(e + _scale(cfg_scale, e) * (d_pos - _scale(perp_neg_scale, e) * perp), empty)
