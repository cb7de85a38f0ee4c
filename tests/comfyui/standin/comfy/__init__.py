"""A small stand-in of the parts of ComfyUI the negguide nodes touch, for tests without a ComfyUI checkout.

Written for these tests (no upstream code copied); each module mirrors the behaviour of its upstream namesake in
Comfy-Org/ComfyUI at a125cd84 (v0.3.64), which the nodes were verified against:

- ``patcher_extension``  comfy/patcher_extension.py: WrappersMP, WrapperExecutor, wrapper lists in model_options
- ``model_patcher``      comfy/model_patcher.py: ModelPatcher.clone / add_wrapper_with_key / remove_wrappers_with_key
- ``model_sampling``     comfy/model_sampling.py: EPS (x = x0 + sigma eps) and CONST (x = (1 - t) x0 + t eps)
- ``sampler_helpers``    comfy/sampler_helpers.py: convert_cond
- ``samplers``           comfy/samplers.py: calc_cond_batch (all conds of an evaluation in one model call),
                         sampling_function / cfg_function (calc-cond-batch, pre- and post-CFG functions, the cfg 1
                         shortcut), CFGGuider.sample -> outer_sample -> inner_sample with the OUTER_SAMPLE and
                         SAMPLER_SAMPLE wrappers, KSAMPLER and three k-diffusion samplers (euler, euler_ancestral,
                         heun) from comfy/k_diffusion/sampling.py
"""
