"""Image captioners for diffusion-negative prompting (auto-DNP): any transformers captioning model by name.

The paper captions with BLIP-2; the default here is the smaller BLIP base captioner. transformers 4.x has an
``image-to-text`` pipeline; transformers 5 folded it into ``image-text-to-text``, which takes a text prompt
(``""`` asks BLIP-style models for an unconditional caption; a chat VLM wants e.g. "Describe the image.").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-base"


def _task() -> str:
    from transformers.pipelines import SUPPORTED_TASKS

    return "image-to-text" if "image-to-text" in SUPPORTED_TASKS else "image-text-to-text"


def _text(result) -> str:
    """The generated text of a pipeline result (a list of dicts; chat models return message lists)."""
    while isinstance(result, list):
        if not result:
            return ""
        result = result[-1] if isinstance(result[-1], dict) and "role" in result[-1] else result[0]
    if isinstance(result, dict):
        text = result.get("generated_text", result.get("content", ""))
        return _text(text) if isinstance(text, list) else str(text)
    return str(result)


TESTBED_DETECTOR = "negguide-shapes-detector"  # config.json "kind" of the shapes testbed's detector


def _testbed_detector(model: str) -> bool:
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("kind") == TESTBED_DETECTOR
    except (OSError, ValueError, AttributeError):
        return False


def load_testbed_captioner(folder: str, device=None) -> Callable:
    """The shapes testbed's detector as a captioner: what it finds, in the testbed's caption language."""
    import numpy as np
    import torch

    from train.t2i.detector import image_captions, load_detector

    detector = load_detector(folder, device or "cpu")

    def caption(image) -> str:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
        return image_captions(detector, pixels[None] / 127.5 - 1.0)[0]

    caption.__name__ = str(folder)
    return caption


def load_captioner(model: str = DEFAULT_CAPTIONER, device=None, prompt: str = "", max_new_tokens: int = 40,
                   **pipeline_kwargs) -> Callable:
    """A callable ``PIL.Image -> str`` around ``transformers.pipeline`` for ``model`` (hub id or local dir), or
    the shapes testbed's detector when ``model`` is its folder (``models/shapes-t2i/detector``)."""
    if _testbed_detector(model):
        return load_testbed_captioner(model, device)
    from transformers import pipeline

    task = _task()
    captioner = pipeline(task, model=model, device=device, **pipeline_kwargs)

    def caption(image) -> str:
        if task == "image-to-text":
            out = captioner(image, prompt=prompt or None, max_new_tokens=max_new_tokens)
        else:
            out = captioner(images=image, text=prompt, max_new_tokens=max_new_tokens)
        return _text(out).strip()

    caption.__name__ = str(model)
    return caption
