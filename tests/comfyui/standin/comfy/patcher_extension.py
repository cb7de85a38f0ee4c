"""Mirrors comfy/patcher_extension.py (ComfyUI a125cd84): wrapper kinds and the executor that chains wrappers."""


class WrappersMP:
    OUTER_SAMPLE = "outer_sample"
    SAMPLER_SAMPLE = "sampler_sample"


def get_all_wrappers(kind: str, model_options: dict) -> list:
    wrappers = model_options.get("transformer_options", {}).get("wrappers", {}).get(kind, {})
    return [w for per_key in wrappers.values() for w in per_key]


class WrapperExecutor:
    """``wrapper(executor, *args)`` calls ``executor(*args)`` to run the next wrapper, or the original last."""

    def __init__(self, original, class_obj, wrappers: list, index: int = 0):
        self.original, self.class_obj, self.wrappers, self.index = original, class_obj, wrappers, index

    def __call__(self, *args, **kwargs):
        return WrapperExecutor(self.original, self.class_obj, self.wrappers, self.index + 1).execute(*args, **kwargs)

    def execute(self, *args, **kwargs):
        if self.index == len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.index](self, *args, **kwargs)
