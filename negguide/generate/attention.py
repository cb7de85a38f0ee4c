"""Cross-attention capture: per step, per prompt token, what every cross-attention layer of the UNet attends to,
and Ban et al.'s strength of a negative prompt (2024, Sec. 4.2, Eq. 6):

    r_t = sum_k ||F_k,neg(i)^(t)||_F / sum_k ||F_k,pos(r(i))^(t)||_F

with F_k,s(i)^(t) the cross-attention map of layer k for token i of text s at step t (averaged over heads), the
negative prompt's token i and r(i) the positive prompt's token it is compared with (chosen by the user: "woman"
for the negative "glasses").

Capture wraps the UNet's existing attention processors for the run only (off: nothing is installed, nothing
costs); a wrapped processor computes the layer's attention probabilities once more for the record and then calls
the original processor, so the images are exactly those of a run without capture. Only the first model
evaluation of each sampler step is recorded (second-order samplers evaluate twice). Storage per step and row:
the per-token norms of every layer and the per-token maps averaged over layers at ``map_size`` (DAAM-style heat
maps, Tang et al. 2022), kept on the host as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask=None, temb=None) -> torch.Tensor:
    """``[B, heads, pixels, tokens]`` attention probabilities of a diffusers ``Attention`` layer, computed as
    its classic processor does (the same projections, norms and scaling)."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    batch, tokens, _ = encoder_hidden_states.shape
    attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))
    key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
    probs = attn.get_attention_scores(query, key, attention_mask)
    return probs.view(batch, attn.heads, probs.shape[1], probs.shape[2])


class _RecordingProcessor:
    """Records a cross-attention layer's maps, then defers to the layer's own processor."""

    def __init__(self, capture: AttentionCapture, layer: str, inner):
        self.capture, self.layer, self.inner = capture, layer, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if encoder_hidden_states is not None and self.capture.recording:
            with torch.no_grad():
                probs = attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            self.capture.record(self.layer, probs)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class AttentionCapture:
    """Context manager around a denoising loop: ``with AttentionCapture(unet, latent_hw) as capture:``, then
    ``capture.begin(step, layout, first)`` before each model call (``layout``: the plan's ``(branch, image)`` per
    row) and ``capture.result(texts, tokenizer)`` after the loop."""

    def __init__(self, unet, latent_hw: tuple[int, int], map_size: int = 16):
        if not hasattr(unet, "attn_processors"):
            raise ValueError(f"{type(unet).__name__} has no attention processors to capture")
        self.unet, self.latent_hw, self.map_size = unet, latent_hw, map_size
        self.recording = False
        self._originals = None
        self._step, self._layout = None, ()
        self.norms: dict[tuple[int, str, int], dict[str, torch.Tensor]] = {}  # (step, branch, image) -> layer -> [T]
        self.maps: dict[tuple[int, str, int], torch.Tensor] = {}  # (step, branch, image) -> [T, h, w], layer sum
        self.layers: list[str] = []

    def __enter__(self) -> AttentionCapture:
        self._originals = dict(self.unet.attn_processors)
        cross = [name for name in self._originals if name.endswith("attn2.processor")]
        if not cross:
            raise ValueError(f"{type(self.unet).__name__} has no cross-attention layers (attn2) to capture")
        self.layers = [name.removesuffix(".processor") for name in cross]
        wrapped = {name: (_RecordingProcessor(self, name.removesuffix(".processor"), proc) if name in cross else proc)
                   for name, proc in self._originals.items()}
        self.unet.set_attn_processor(wrapped)
        return self

    def __exit__(self, *_exc_info) -> None:
        self.unet.set_attn_processor(self._originals)
        self.recording = False

    def begin(self, step: int, layout: tuple[tuple[str, int], ...], first: bool = True) -> None:
        """The next model call evaluates ``layout``'s rows for ``step`` (recorded only when ``first``)."""
        self.recording = first
        self._step, self._layout = step, layout

    def _map_shape(self, pixels: int) -> tuple[int, int]:
        h, w = self.latent_hw
        factor = math.sqrt(h * w / pixels)
        return round(h / factor), round(w / factor)

    def record(self, layer: str, probs: torch.Tensor) -> None:
        mean = probs.float().mean(dim=1)  # [rows, pixels, tokens], averaged over heads
        norms = mean.pow(2).sum(dim=1).sqrt().cpu()  # Frobenius norm of each token's map: [rows, tokens]
        h, w = self._map_shape(mean.shape[1])
        size = (self.map_size, max(1, round(self.map_size * w / h)))
        maps = torch.nn.functional.interpolate(mean.transpose(1, 2).reshape(-1, mean.shape[2], h, w), size=size,
                                               mode="bilinear", align_corners=False).cpu()
        for row, (branch, image) in enumerate(self._layout[: mean.shape[0]]):
            key = (self._step, branch, image)
            self.norms.setdefault(key, {})[layer] = norms[row]
            self.maps[key] = self.maps.get(key, 0) + maps[row]

    def result(self, texts: dict[str, list[str]], tokenizer) -> AttentionRecord:
        """The record of the run; ``texts``: each branch's text per image (what its rows were conditioned on)."""
        steps = sorted({k[0] for k in self.norms})
        return AttentionRecord(steps, self.layers, texts, tokenizer, self.norms,
                               {k: v / len(self.norms[k]) for k, v in self.maps.items()})


@dataclass
class AttentionRecord:
    """What a captured run's cross-attention did. ``norms[(step, branch, image)][layer]``: per-token Frobenius
    norms ``[tokens]``; ``maps[(step, branch, image)]``: per-token maps averaged over layers ``[tokens, h, w]``.
    A branch appears at a step only where the run evaluated it (a window's negative only inside the window)."""

    steps: list[int]
    layers: list[str]
    texts: dict[str, list[str]]
    tokenizer: object = field(repr=False)
    norms: dict = field(repr=False)
    maps: dict = field(repr=False)

    def tokens(self, branch: str, image: int = 0) -> list[str]:
        ids = self.tokenizer(self.texts[branch][image]).input_ids
        return self.tokenizer.convert_ids_to_tokens(ids)

    def token_positions(self, branch: str, word: str, image: int = 0) -> list[int]:
        """Positions of ``word``'s tokens in the branch's prompt (a word the tokenizer splits: all its pieces)."""
        prompt = self.tokenizer(self.texts[branch][image]).input_ids
        piece = self.tokenizer(word, add_special_tokens=False).input_ids
        for start in range(len(prompt) - len(piece) + 1):
            if piece and prompt[start:start + len(piece)] == piece:
                return list(range(start, start + len(piece)))
        raise ValueError(f"{word!r} is not in the {branch} prompt {self.texts[branch][image]!r} "
                         f"(tokens: {' '.join(self.tokens(branch, image))})")

    def strength(self, negative_word: str, positive_word: str, image: int = 0) -> torch.Tensor:
        """Ban et al.'s r_t per recorded step (NaN where the negative branch was not evaluated), float64."""
        neg = self.token_positions("negative", negative_word, image)
        pos = self.token_positions("positive", positive_word, image)
        out = []
        for step in self.steps:
            n, p = self.norms.get((step, "negative", image)), self.norms.get((step, "positive", image))
            if n is None or p is None:
                out.append(float("nan"))
                continue
            num = sum(float(v[neg].sum()) for v in n.values())
            den = sum(float(v[pos].sum()) for v in p.values())
            out.append(num / den if den > 0 else float("nan"))
        return torch.tensor(out, dtype=torch.float64)

    def plot(self, negative_word: str, positive_word: str, images=None, ax=None, title: str | None = None):
        """r_t against the sampler step for each image (matplotlib figure)."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
        count = len(self.texts["positive"])
        for image in (range(count) if images is None else images):
            ax.plot([s + 1 for s in self.steps], self.strength(negative_word, positive_word, image).numpy(),
                    marker="o", markersize=3, lw=1, label=f"image {image}")
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("sampler step")
        ax.set_ylabel(f"r_t ('{negative_word}' / '{positive_word}')")
        ax.set_title(title or "negative-prompt strength (Ban et al. 2024, Eq. 6)", fontsize=9)
        ax.grid(alpha=0.3)
        if count > 1:
            ax.legend(fontsize=7)
        return fig if fig is not None else ax.figure
