"""The IMAGE of a trace: lambda(t) and p(t) per image for DNG, the window's steps for the other modes."""

from __future__ import annotations

from .plot import draw


class NegGuidePlot:
    DESCRIPTION = ("Plots the guided passes of the latest prompt from a negguide node's trace: DNG's posterior p(t) "
                   "and scale lambda(t) per image, or the steps where the negative prompt acted. Connect the "
                   "sampler's output to 'samples' so the plot is drawn after it.")
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("plot", "summary")
    OUTPUT_TOOLTIPS = ("The plot as an image.", "One line per pass: mode, sampler, tracker, steps, model rows.")
    FUNCTION = "plot"
    CATEGORY = "sampling/custom_sampling/negguide"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "trace": ("NEGGUIDE_TRACE", {"tooltip": "The trace output of a negguide guider or model patch."}),
            "samples": ("LATENT", {"tooltip": "The sampler's output (only to draw after the sampler has run)."}),
            "width": ("INT", {"default": 768, "min": 320, "max": 4096, "step": 8,
                              "tooltip": "Width of the plot in pixels."}),
        }}

    def plot(self, trace, samples, width):
        import numpy
        import torch

        picture = numpy.asarray(draw(trace, width), dtype=numpy.float32) / 255.0
        return (torch.from_numpy(picture)[None], trace.describe())
