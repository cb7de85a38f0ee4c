"""Build a random-weight, full-size Stable Diffusion 1.5 checkpoint with ComfyUI's own model classes.

    $COMFYUI_PYTHON tests/comfyui/random_checkpoint.py COMFYUI_DIR OUT.safetensors

Runs in ComfyUI's Python (it imports ``comfy``). The UNet (``comfy.supported_models.SD15`` with the SD1.5 UNet
config of ``comfy/model_detection.py``), the CLIP-L text encoder (``comfy.sd1_clip.SD1ClipModel``) and the KL
VAE (``comfy.ldm.models.autoencoder.AutoencoderKL`` with ComfyUI's default SD1 ``ddconfig``) are instantiated
at full size, every weight is drawn at random, and ComfyUI's own ``state_dict_for_saving`` writes the original
LDM key layout (``model.diffusion_model.*``, ``cond_stage_model.*``, ``first_stage_model.*``) in fp16: exactly
what ``CheckpointLoaderSimple`` detects from tensor shapes. Nothing is downloaded; the output is reproducible.

ComfyUI builds its modules with ``comfy.ops.disable_weight_init`` (uninitialised memory), so every parameter
is set here: matrices and convolution kernels N(0, 1/fan_in), biases N(0, 0.02^2), norm scales 1 and shifts 0.
A zero-initialised output layer (what training code does) would make the prediction independent of the prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / p[0].numel() ** 0.5)
            elif name.endswith("bias"):
                is_norm = any(k in name for k in ("norm", "ln_", "layer_norm"))
                p.copy_(torch.zeros(p.shape) if is_norm else torch.randn(p.shape, generator=generator) * 0.02)
            else:  # 1-d scales: norms (and CLIP's logit scale)
                p.fill_(1.0)


def build(comfyui_dir: str, out: str, seed: int = 0) -> dict[str, int]:
    sys.path.insert(0, comfyui_dir)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management picks a device
    import comfy.sd1_clip
    import comfy.supported_models
    from comfy.ldm.models.autoencoder import AutoencoderKL

    generator = torch.Generator().manual_seed(seed)
    unet_config = {  # comfy/model_detection.py, unet_config_from_diffusers_unet: the SD15 entry
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "dtype": torch.float32, "in_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "use_temporal_attention": False,
        "use_temporal_resblock": False,
    }
    model_config = comfy.supported_models.SD15(unet_config)
    model = model_config.get_model({}, "", device="cpu")
    randomize(model.diffusion_model, generator)

    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32)
    randomize(clip, generator)

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    randomize(vae, generator)

    import inspect

    if "unet_state_dict" in inspect.signature(model.state_dict_for_saving).parameters:  # ComfyUI v0.33 and later
        state = model.state_dict_for_saving(model.diffusion_model.state_dict(), clip.state_dict(), vae.state_dict())
    else:
        state = model.state_dict_for_saving(clip.state_dict(), vae.state_dict())
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(state, out)
    counts = {"unet": 0, "clip": 0, "vae": 0}
    for k, v in state.items():
        part = "unet" if k.startswith("model.") else "clip" if k.startswith("cond_stage_model.") else "vae"
        counts[part] += v.numel()
    return counts


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(build(sys.argv[1], sys.argv[2]))
