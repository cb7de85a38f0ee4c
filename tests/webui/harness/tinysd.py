"""A tiny random Stable-Diffusion-shaped model for the harnesses: CLIP text encoder + UNet2DConditionModel.

Nothing is downloaded: weights are random (seeded), configs are built here, the tokenizer files come from
``../shared/tokenizers/clip-vit-l-14`` (or ``NEGGUIDE_CLIP_TOKENIZER``). The model speaks the WebUI's
language: ``get_learned_conditioning`` returns ``[B, 77*k, D]`` tensors (75-token chunks like the WebUI) or,
in SDXL mode, dicts ``{"crossattn": [B, 77*k, D], "vector": [B, V]}`` whose vector depends on the target
size; ``apply_model`` returns eps; ``alphas_cumprod`` is SD's scaled-linear schedule.

It also plays the ControlNet extension's part: rows whose first token is a +/-1024 marker (what sd-webui-
controlnet prepends to conditionings) are unmarked before the UNet runs and their sign is recorded in
``marker_log``; every evaluated row count is recorded in ``rows_log``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

MARK = 1024.0


def find_tokenizer_dir() -> Path | None:
    """The CLIP tokenizer folder (``vocab.json`` + ``merges.txt``): ``$NEGGUIDE_CLIP_TOKENIZER``, else
    ``tokenizers/clip-vit-l-14`` of the shared folder (``$NEGGUIDE_SHARED``, else ``../shared``), else None."""
    from train.paths import shared_root

    env = os.environ.get("NEGGUIDE_CLIP_TOKENIZER")
    for c in ([Path(env)] if env else []) + [shared_root() / "tokenizers" / "clip-vit-l-14"]:
        if (c / "vocab.json").is_file() and (c / "merges.txt").is_file():
            return c
    return None


def marker_sign(cond: torch.Tensor) -> torch.Tensor:
    """Per row: +1 / -1 if the first token is a ControlNet marker, 0 otherwise."""
    first = cond[:, 0, :].float()
    pos = (first - MARK).abs().mean(dim=1) < 1e-3
    neg = (first + MARK).abs().mean(dim=1) < 1e-3
    return pos.to(torch.int8) - neg.to(torch.int8)


class TinySD:
    def __init__(
        self,
        seed: int = 0,
        sdxl: bool = False,
        dim: int = 32,
        vector_dim: int = 16,
        device: str = "cpu",
        sample_size: int = 8,
        block_out_channels=(32, 64),
        size: str = "tiny",
        dtype=torch.float32,
    ):
        from diffusers import UNet2DConditionModel
        from schedule_stand_ins import sd_schedule
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        tok_dir = find_tokenizer_dir()
        if tok_dir is None:
            raise FileNotFoundError("CLIP tokenizer files (../shared/tokenizers/clip-vit-l-14) not found")
        self.tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
        torch.manual_seed(seed)
        if size == "sd":  # Stable Diffusion 1.x UNet width (random weights), 64x64 latents
            dim, sample_size = 768, 64
        elif size == "small":  # a CPU-sized middle ground: 32x32 latents (256 px), wider blocks
            dim, sample_size, block_out_channels = 64, 32, (64, 128)
        tcfg = CLIPTextConfig(
            vocab_size=self.tokenizer.vocab_size,
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=dim,
        )
        self.text_encoder = CLIPTextModel(tcfg).eval().to(device)
        self.sdxl = sdxl
        self.vector_dim = vector_dim
        kw = {}
        if sdxl:
            kw = dict(class_embed_type="projection", projection_class_embeddings_input_dim=vector_dim)
        if size == "sd":
            kw.update(
                block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                norm_num_groups=32,
            )
        else:
            kw.update(
                block_out_channels=tuple(block_out_channels),
                layers_per_block=1,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                norm_num_groups=min(32, block_out_channels[0]),
            )
        self.unet = (
            UNet2DConditionModel(
                sample_size=sample_size,
                in_channels=4,
                out_channels=4,
                cross_attention_dim=dim,
                attention_head_dim=8,
                **kw,
            )
            .eval()
            .to(device=device, dtype=dtype)
        )
        self.dtype = dtype
        # diffusers zero-initialises conv_out: make it random so predictions depend on the conditioning
        with torch.no_grad():
            for p in self.unet.conv_out.parameters():
                p.normal_(0, 0.02)
        self.device = device
        sched = sd_schedule()
        self.alphas_cumprod = sched.alphas_cumprod.to(torch.float32)
        self.schedule = sched
        self.parameterization = "eps"
        self.cond_stage_key = "txt"
        self.rows_log: list[int] = []
        self.marker_log: list[torch.Tensor] = []
        self.calls = 0
        self.cond_stage_model_empty_prompt = self._encode_text([""])

    # --- text ------------------------------------------------------------------------------------------
    def _encode_one(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        chunks = [ids[i : i + 75] for i in range(0, max(len(ids), 1), 75)] or [[]]
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        out = []
        for ch in chunks:
            row = [bos] + ch + [eos] * (76 - len(ch))
            with torch.no_grad():
                out.append(self.text_encoder(torch.tensor([row], device=self.device))[0][0])
        return torch.cat(out, dim=0)

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        rows = [self._encode_one(p) for p in prompts]
        n = max(r.shape[0] for r in rows)
        if any(r.shape[0] != n for r in rows):  # the WebUI pads a batch to the longest prompt
            empty = self._encode_one("")
            rows = [torch.cat([r] + [empty] * ((n - r.shape[0]) // 77)) for r in rows]
        return torch.stack(rows)

    def get_learned_conditioning(self, prompts, width: int = 64, height: int = 64):
        prompts = list(prompts)
        width = getattr(prompts, "width", width)
        height = getattr(prompts, "height", height)
        c = self._encode_text(prompts)
        if not self.sdxl:
            return c
        # SDXL's vector holds the pooled text and the size embeddings: make it depend on both
        pooled = c[:, 0, : self.vector_dim // 2]
        size = torch.tensor([width / 64.0, height / 64.0], device=c.device, dtype=c.dtype)
        size = size.repeat(self.vector_dim // 4)[None].expand(c.shape[0], -1)
        pad = self.vector_dim - pooled.shape[1] - size.shape[1]
        vec = torch.cat([pooled, size, torch.zeros(c.shape[0], pad, device=c.device)], dim=1)
        return {"crossattn": c, "vector": vec}

    # --- UNet ------------------------------------------------------------------------------------------
    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """eps prediction; ``cond`` as the WebUI builds it: ``{"c_crossattn": [...], "c_concat": [...]}`` or
        an SDXL dict with ``crossattn`` / ``vector`` keys."""
        if "crossattn" in cond:
            ctx, vec = cond["crossattn"], cond.get("vector")
        else:
            ctx, vec = cond["c_crossattn"][0], None
            if isinstance(ctx, dict):
                ctx, vec = ctx["crossattn"], ctx.get("vector")
        sign = marker_sign(ctx)
        self.marker_log.append(sign)
        if bool((sign != 0).any()):
            if not bool((sign != 0).all()):
                raise AssertionError("some rows are marked and some are not: a conditioning lost its marker")
            ctx = ctx[:, 1:]
        self.rows_log.append(int(x.shape[0]))
        self.calls += 1
        kw = {}
        if self.sdxl:
            if vec is None:
                raise AssertionError("SDXL conditioning reached the UNet without its vector")
            kw["class_labels"] = vec
        t = t.to(torch.float32)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if "class_labels" in kw:
            kw["class_labels"] = kw["class_labels"].to(self.dtype)
        out = self.unet(x.to(self.dtype), t, encoder_hidden_states=ctx.to(self.dtype), **kw).sample
        return out.to(x.dtype)

    def reset_logs(self):
        self.rows_log.clear()
        self.marker_log.clear()
        self.calls = 0


def add_marker(cond, positive: bool):
    """What sd-webui-controlnet's ``mark_prompt_context`` does: prepend a +/-1024 token row."""
    if isinstance(cond, dict):
        return {**cond, "crossattn": add_marker(cond["crossattn"], positive)}
    mark = torch.full_like(cond[..., :1, :], MARK if positive else -MARK)
    return torch.cat([mark, cond], dim=-2)
