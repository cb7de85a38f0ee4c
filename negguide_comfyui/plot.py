"""The per-step picture of a trace: the core's :func:`negguide.draw_passes` (PIL; ComfyUI ships Pillow, matplotlib
may be absent), one block per guided pass of the latest prompt."""

from __future__ import annotations

from negguide import PlottedPass, draw_passes

from .trace import Trace


def draw(trace: Trace, width: int = 768):
    passes = [PlottedPass(f"{s.title}, {s.sampler}, {s.steps} steps, batch {s.batch_size}"
                          + (f", tracker {s.tracker}" if s.tracker else ""), s.records, s.batch_size, bool(s.tracker))
              for s in trace.passes]
    return draw_passes(passes, width)
