"""The plot node: an IMAGE tensor of the trace (DNG's p and lambda per image, a window's steps) and its summary."""

import torch
from standin_runs import DNG, NODES, WINDOW, ksampler, model, patch

from negguide_comfyui.trace import Trace


def plot(trace, width=640):
    return NODES["NegGuidePlot"]().plot(trace, {"samples": torch.zeros(1)}, width)


def test_dng_and_window_passes_become_one_image():
    m = model()
    dng, dng_trace = patch("NegGuideDNGPatch", m, **DNG)
    window, window_trace = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=2, window_end=3)
    ksampler(dng, sampler="euler_ancestral")
    ksampler(window)
    for trace in (dng_trace, window_trace):
        image, summary = plot(trace)
        assert image.dtype == torch.float32 and image.shape == (1, 26 + 210, 640, 3)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.05
    assert "tracker transition" in plot(dng_trace)[1] and "3.00 rows per image and step" in plot(dng_trace)[1]
    assert "negative active on 2 of 4 steps" in plot(window_trace)[1]


def test_an_empty_trace_says_so():
    image, summary = plot(Trace(), 320)
    assert image.shape == (1, 236, 320, 3) and "no guided pass" in summary
