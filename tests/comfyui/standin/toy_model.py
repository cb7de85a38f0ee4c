"""A tiny conditional denoiser with ComfyUI's BaseModel interface (``apply_model``, ``extra_conds``,
``model_sampling``, ``model_config.unet_config``) for the stand-in: rows are independent and deterministic, so
batches, row orders and repeated calls give bit-identical per-row outputs, and every model call is recorded."""

from types import SimpleNamespace

import torch
from comfy.model_sampling import CONST, EPS, model_sampling


class ToyModel:
    def __init__(self, flow: bool = False, guidance_embed: bool = False, channels: int = 4,
                 sampling: type | None = None):
        sampling = sampling or (CONST if flow else EPS)
        self.model_sampling = model_sampling(sampling, 1.0 if issubclass(sampling, CONST) else 14.6)
        self.model_config = SimpleNamespace(unet_config={"guidance_embed": guidance_embed})
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(channels, channels, generator=generator, dtype=torch.float64) / channels**0.5
        self.calls: list[int] = []  # rows per apply_model call

    def extra_conds(self, **kwargs):
        return {"c_crossattn": kwargs["cross_attn"]}

    def apply_model(self, x, t, c_crossattn, transformer_options=None):
        self.calls.append(x.shape[0])
        x64 = x.to(torch.float64)
        t = t.to(torch.float64)
        x_in = self.model_sampling.calculate_input(t, x64)
        bias = c_crossattn.to(torch.float64).mean(1)[:, : x.shape[1], None, None]
        time = torch.log1p(t).reshape(-1, 1, 1, 1)
        output = torch.tanh(torch.einsum("oc,bchw->bohw", self.weight, x_in) + bias + 0.1 * time)
        return self.model_sampling.calculate_denoised(t, output, x64).to(x.dtype)
