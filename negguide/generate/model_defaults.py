"""Defaults a model folder may carry for negguide: ``negguide.json`` beside ``model_index.json``.

diffusers pipeline folders do not record the guidance scale or step count a model was made for, nor a captioner
for diffusion-negative prompting. negguide's shapes testbed (``models/shapes-t2i``) carries them::

    {"guidance_scale": 4.0, "steps": 50, "captioner": "detector"}

``captioner`` is a folder relative to the model (or a transformers model id). Arguments the user gives always
win; a folder without the file changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = "negguide.json"
TYPES = {"guidance_scale": (int, float), "steps": int, "captioner": str}


def read_model_defaults(model) -> dict:
    """The checked defaults of a local model folder ({} for hub ids and folders without the file); raises
    ValueError naming the file for a malformed one."""
    if model is None:
        return {}
    path = Path(str(model)).expanduser() / FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    out = {}
    for key, kind in TYPES.items():
        if key in data:
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{path}: {key} must be a {kind if isinstance(kind, type) else 'number'}, "
                                 f"got {value!r}")
            out[key] = value
    if "steps" in out and out["steps"] < 1 or "guidance_scale" in out and out["guidance_scale"] < 0:
        raise ValueError(f"{path}: steps must be >= 1 and guidance_scale >= 0")
    if "captioner" in out and (path.parent / out["captioner"]).is_dir():
        out["captioner"] = str(path.parent / out["captioner"])
    return out
