"""Mirrors comfy/model_patcher.py (ComfyUI a125cd84): a patcher around a model, cloned by patch nodes; wrappers
are kept per patcher and merged into a sampling call's model_options (comfy/sampler_helpers.py
prepare_model_patcher)."""

import copy


class ModelPatcher:
    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}
        self.wrappers: dict[str, dict[str, list]] = {}

    def clone(self):
        n = ModelPatcher(self.model)
        n.model_options = copy.deepcopy(self.model_options)
        n.wrappers = {kind: {key: list(ws) for key, ws in per_key.items()} for kind, per_key in self.wrappers.items()}
        return n

    def get_model_object(self, name: str):
        return getattr(self.model, name)

    def add_wrapper_with_key(self, kind: str, key: str, wrapper):
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(wrapper)

    def remove_wrappers_with_key(self, kind: str, key: str):
        self.wrappers.get(kind, {}).pop(key, None)

    def set_model_sampler_post_cfg_function(self, fn):
        self.model_options["sampler_post_cfg_function"] = self.model_options.get("sampler_post_cfg_function", []) + [fn]

    def set_model_sampler_calc_cond_batch_function(self, fn):
        self.model_options["sampler_calc_cond_batch_function"] = fn
