"""The result of a negguide generation, in diffusers' output style."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput


@dataclass
class NegGuideOutput(BaseOutput):
    """``images``: PIL images, a numpy array ``[B, H, W, C]``, a tensor ``[B, C, H, W]`` or latents, per
    ``output_type``. ``records``: the run's per-step record (``step``, ``sigma``, ``negative_active``, and for
    DNG ``p`` and ``lambda`` per image). ``settings``: every setting of the call, JSON-serialisable (what the CLI
    writes into the PNGs). ``settings["average_extra_rows"]``: denoiser rows per image and step beyond CFG's
    two that the run spent (DNG's gated tracker probes only some steps).
    DNP adds ``dns_images`` (the diffusion-negative images) and ``dnp_prompts`` (their
    captions, the negative prompts of the final images)."""

    images: object
    records: list | None = None
    settings: dict | None = None
    nsfw_content_detected: list | None = None
    dns_images: object = None
    dnp_prompts: list | None = None
    attention: object = None  # negguide.generate.attention.AttentionRecord with capture_attention=True

    @property
    def tracker(self) -> str | None:
        """DNG's posterior tracker for this run (None for other modes)."""
        return (self.settings or {}).get("tracker")

    def _series(self, key: str) -> torch.Tensor | None:
        rows = [r[key] for r in self.records or [] if key in r]
        return torch.tensor(rows, dtype=torch.float64) if rows else None

    @property
    def lambdas(self) -> torch.Tensor | None:
        """DNG's lambda per step and image, ``[steps, B]`` (None for other modes)."""
        return self._series("lambda")

    @property
    def posteriors(self) -> torch.Tensor | None:
        """DNG's posterior p(c- | x_t) per step and image, ``[steps, B]`` (None for other modes)."""
        return self._series("p")

    def plot_attention(self, negative_word: str, positive_word: str, **kwargs):
        """Ban et al.'s r_t per step for each image (needs ``capture_attention=True``): see
        :meth:`negguide.generate.attention.AttentionRecord.plot`."""
        if self.attention is None:
            raise ValueError("no attention was captured: call the pipeline with capture_attention=True")
        return self.attention.plot(negative_word, positive_word, **kwargs)

    def plot(self, **kwargs):
        """The p(t) / lambda(t) figure (matplotlib), see :func:`negguide.generate.plot.plot_guidance`."""
        from .plot import plot_guidance

        return plot_guidance(self.records or [], **kwargs)
