"""Row and token operations on the WebUI's conditionings.

A conditioning is a tensor ``[rows, tokens, dim]`` (SD 1/2) or a dict of tensors with the rows first
(SDXL: ``crossattn [rows, tokens, dim]`` and ``vector [rows, V]``). The ControlNet extension prepends a
marker token row of +1024 (positive) or -1024 (negative) to conditionings; whatever we build keeps the
marker of the slot it goes into, so ControlNet still tells cond from uncond rows.
"""

from __future__ import annotations

import torch

MARK = 1024.0


def rows(c) -> int:
    return int(c["crossattn"].shape[0] if isinstance(c, dict) else c.shape[0])


def _ctx(c) -> torch.Tensor:
    return c["crossattn"] if isinstance(c, dict) else c


def tokens(c) -> int:
    return int(_ctx(c).shape[1])


def as_class_of(ref, c):
    """``c`` in ``ref``'s own dict class: the WebUIs' ``DictWithShape`` (``.shape``; in the Forge line also
    ``advanced_indexing``, which their samplers call on every SDXL cond). The model's own encoder returns a plain
    dict, so the empty prompt's encoding needs this before it takes a slot."""
    if not (isinstance(ref, dict) and isinstance(c, dict)) or type(c) is type(ref):
        return c
    try:
        return type(ref)(c)
    except TypeError:  # a dict class that cannot be built from a dict alone
        return c


def _map(c, fn_ctx, fn_other=None):
    if not isinstance(c, dict):
        return fn_ctx(c)
    out = {}
    for k, v in c.items():
        if k == "crossattn":
            out[k] = fn_ctx(v)
        else:
            out[k] = fn_other(v) if fn_other is not None else v
    return as_class_of(c, out)


def select(c, idx):
    """Rows ``idx`` (a slice, list or tensor of indices) of every tensor in ``c``."""
    return _map(c, lambda t: t[idx], lambda t: t[idx])


def cat(cs: list):
    if not isinstance(cs[0], dict):
        return torch.cat(cs)
    return as_class_of(cs[0], {k: torch.cat([c[k] for c in cs]) for k in cs[0]})


def marker_of(c) -> float:
    """+1024 / -1024 if every row of ``c`` starts with that ControlNet marker token, else 0."""
    t = _ctx(c)
    if t.ndim != 3 or t.shape[1] < 2:
        return 0.0
    first = t[:, 0, :].float()
    for m in (MARK, -MARK):
        if bool(((first - m).abs().mean(dim=1) < 1e-3).all()):
            return m
    return 0.0


def strip_known(c, m: float):
    """``c`` without its first token when its marker ``m`` is already known (0: unmarked)."""
    return c if m == 0.0 else _map(c, lambda t: t[:, 1:])


def with_marker(c, m: float):
    if m == 0.0:
        return c
    return _map(c, lambda t: torch.cat([torch.full_like(t[:, :1], m), t], dim=1))


def repeat_rows(c, n: int):
    """A one-row conditioning repeated to ``n`` rows."""
    return _map(c, lambda t: t.expand(n, *t.shape[1:]).clone(), lambda t: t.expand(n, *t.shape[1:]).clone())


def to_device(c, like: torch.Tensor):
    return _map(
        c,
        lambda t: t.to(device=like.device, dtype=like.dtype),
        lambda t: t.to(device=like.device, dtype=like.dtype),
    )


def pad_tokens(c, n_tokens: int, empty_chunk):
    """Pad the token axis of ``c`` (unmarked) to ``n_tokens`` the WebUI's way: with whole chunks of the
    empty prompt's encoding (``pad_cond``), or by repeating the last token where the difference is not a
    whole number of chunks (``pad_cond_uncond_v0``)."""
    have = tokens(c)
    if have == n_tokens:
        return c
    if have > n_tokens:
        raise ValueError(f"cannot shorten a conditioning from {have} to {n_tokens} tokens")
    missing = n_tokens - have
    chunk = _ctx(empty_chunk) if empty_chunk is not None else None

    def pad(t):
        if chunk is not None and missing % chunk.shape[-2] == 0:
            e = chunk.reshape(-1, chunk.shape[-1]).to(device=t.device, dtype=t.dtype)
            e = e[-chunk.shape[-2] :]
            rep = e.unsqueeze(0).expand(t.shape[0], -1, -1).repeat(1, missing // chunk.shape[-2], 1)
        else:
            rep = t[:, -1:].expand(-1, missing, -1)
        return torch.cat([t, rep], dim=1)

    return _map(c, pad)
