"""Image captioners for diffusion-negative prompting (auto-DNP): any transformers captioning model by name.

The paper captions with BLIP-2; the default here is the smaller BLIP base captioner. transformers 4.x has an
``image-to-text`` pipeline; transformers 5 folded it into ``image-text-to-text``, which takes a text prompt
(``""`` asks BLIP-style models for an unconditional caption; a chat VLM wants e.g. "Describe the image.").
"""

from __future__ import annotations

from collections.abc import Callable

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


def load_captioner(model: str = DEFAULT_CAPTIONER, device=None, prompt: str = "", max_new_tokens: int = 40,
                   **pipeline_kwargs) -> Callable:
    """A callable ``PIL.Image -> str`` around ``transformers.pipeline`` for ``model`` (hub id or local dir)."""
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
