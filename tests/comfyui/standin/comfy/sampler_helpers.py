"""Mirrors comfy/sampler_helpers.py (ComfyUI a125cd84): CONDITIONING -> the sampler's list of cond dicts."""

import uuid


def convert_cond(cond):
    out = []
    for tensor, extras in cond:
        c = {**extras, "model_conds": dict(extras.get("model_conds", {})), "uuid": uuid.uuid4()}
        if tensor is not None:
            c["cross_attn"] = tensor
        out.append(c)
    return out
