"""Tiny random models built with the real ComfyUI's own model classes (run inside ComfyUI's Python).

Each family keeps ComfyUI's real model class, model_sampling, conditioning path (``extra_conds``: SDXL's size and
pooled vector, SD3's pooled vector, Flux's guidance) and latent format, at a width the 2-core CPU runs in
milliseconds. Built directly from a config: nothing is detected, loaded or downloaded.
"""

from __future__ import annotations

import torch
from random_checkpoint import randomize


def _unet(channels: int, context: int, adm: int | None, linear: bool, depth: list[int]) -> dict:
    return {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "adm_in_channels": adm, "in_channels": 4, "model_channels": channels,
            "num_res_blocks": [1, 1], "transformer_depth": depth, "channel_mult": [1, 2],
            "transformer_depth_middle": 1, "use_linear_in_transformer": linear, "context_dim": context,
            "transformer_depth_output": [depth[0], depth[0], depth[1], depth[1]], "use_temporal_attention": False,
            "use_temporal_resblock": False}


FAMILIES = {
    # name: (supported_models class, unet config, latent channels, cross-attention shape, pooled shape, extras)
    "sd1": ("SD15", {**_unet(32, 768, None, False, [1, 1]), "num_heads": 4}, 4, (1, 77, 768), None, {}),
    "sdxl": ("SDXL", {**_unet(32, 2048, 2816, True, [0, 1]), "num_classes": "sequential"}, 4, (1, 77, 2048),
             (1, 1280), {}),
    "sd3": ("SD3", {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 2, "input_size": None,
                    "adm_in_channels": 2048, "num_patches": 1024, "pos_embed_max_size": 32,
                    "context_embedder_config": {"target": "torch.nn.Linear",
                                                "params": {"in_features": 4096, "out_features": 128}},
                    "pos_embed_scaling_factor": None, "x_block_self_attn_layers": []},
            16, (1, 77, 4096), (1, 2048), {}),
    "flux": ("Flux", {"image_model": "flux", "in_channels": 16, "patch_size": 2, "out_channels": 16,
                      "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
                      "depth": 1, "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000,
                      "qkv_bias": True, "guidance_embed": True},
             16, (1, 32, 4096), (1, 768), {"guidance": 3.5}),
}


def model(family: str):
    """A ComfyUI ModelPatcher of the family, fp32 on the CPU."""
    import comfy.model_patcher
    import comfy.supported_models

    config_class, unet_config, *_ = FAMILIES[family]
    unet_config = dict(unet_config)
    if family == "flux":  # ComfyUI v0.8+ gives Flux's text ids their own dimensions (none for Flux 1)
        from comfy.ldm.flux.model import FluxParams

        if "txt_ids_dims" in getattr(FluxParams, "__dataclass_fields__", {}):
            unet_config["txt_ids_dims"] = []
    config = getattr(comfy.supported_models, config_class)(unet_config)
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, "", device="cpu")
    randomize(base.diffusion_model, torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def conditioning(family: str, seed: int) -> list:
    """A CONDITIONING of the family's shapes (what its text encoders would output), seeded."""
    _, _, _, cross, pooled, extras = FAMILIES[family]
    generator = torch.Generator().manual_seed(seed)
    options = dict(extras)
    tensor = torch.randn(cross, generator=generator)
    if pooled is not None:
        options["pooled_output"] = torch.randn(pooled, generator=generator)
    return [[tensor, options]]


def latent(family: str, batch: int = 1, batch_index: list[int] | None = None) -> dict:
    out = {"samples": torch.zeros(batch, FAMILIES[family][2], 8, 8)}
    if batch_index is not None:
        out["batch_index"] = batch_index
    return out
