"""Shared helpers for the front-end tests."""

from __future__ import annotations

import torch

from negguide.generate import NegGuidePipeline

SIZE = dict(height=16, width=16)
PROMPT, NEGATIVE = "a red car in a forest", "trees"


def gen(seed: int = 0, n: int | None = None):
    """One generator, or a list of ``n`` per-image generators seeded seed, seed+1, ..."""
    if n is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def wrap(pipe, scheduler: str | None = None) -> NegGuidePipeline:
    """A NegGuidePipeline sharing ``pipe``'s modules; with ``scheduler``, a fresh pipeline object that has it
    (the session's pipeline keeps its own)."""
    from negguide.generate.schedulers import make_scheduler

    if scheduler is None:
        return NegGuidePipeline.from_pipe(pipe)
    out = NegGuidePipeline.from_pipe(pipe, scheduler=make_scheduler(scheduler, pipe.scheduler))
    out.set_progress_bar_config(disable=True)
    return out


def close(a, b, rtol=1e-5, atol=1e-5):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=rtol, atol=atol)
