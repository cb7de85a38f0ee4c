"""Where a program of the Forge line keeps what the Forge adapter borrows from it: the conditioning compiler and
the batch evaluator of its own sampling function. Found by import, by what the program exposes, never by its
version string:

* Forge 2.x (dfdcbab6), Forge Neo (6e1e0d5a): ``backend.sampling.condition.compile_conditions`` and
  ``backend.sampling.sampling_function.calc_cond_uncond_batch`` (two conditionings per call);
* reForge (3b56b268): ``modules_forge.forge_sampler.cond_from_a1111_to_patched_ldm`` and ComfyUI's
  ``ldm_patched.modules.samplers.calc_cond_batch`` (a list of conditionings per call);
* Forge Classic (1f95d717), Forge 1.x: the same compiler and ``ldm_patched.modules.samplers.calc_cond_uncond_batch``
  (two per call).

Either way :class:`ForgeAPI` evaluates a list of compiled conditionings at one state, one prediction each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ForgeAPI:
    compile: Callable  # a WebUI conditioning (tensor, or SDXL's dict) -> the program's compiled list
    evaluate: Callable  # (model, [compiled, ...], x, sigma, model_options) -> [prediction per compiled]
    where: str  # the module it came from (for messages)


def pairwise(calc_cond_uncond_batch: Callable) -> Callable:
    """An evaluator from a two-conditioning one (cond, uncond or None): the conditionings go in pairs."""

    def evaluate(model, conds: list, x, sigma, model_options) -> list:
        out = []
        for i in range(0, len(conds), 2):
            pair = conds[i:i + 2]
            second = pair[1] if len(pair) > 1 else None
            out += list(calc_cond_uncond_batch(model, pair[0], second, x, sigma, model_options))[:len(pair)]
        return out

    return evaluate


def listwise(calc_cond_batch: Callable) -> Callable:
    """An evaluator from ComfyUI's ``calc_cond_batch(model, conds, ...)``. A ``sampler_calc_cond_batch_function``
    in ``model_options`` replaces it, as it does in the program's own ``sampling_function``."""

    def evaluate(model, conds: list, x, sigma, model_options) -> list:
        override = model_options.get("sampler_calc_cond_batch_function")
        if override is not None:
            args = {"conds": conds, "input": x, "sigma": sigma, "model": model, "model_options": model_options}
            return list(override(args))
        return list(calc_cond_batch(model, conds, x, sigma, model_options))

    return evaluate


def find_forge_api() -> ForgeAPI:
    try:  # Forge 2.x and Forge Neo
        from backend.sampling.condition import compile_conditions
        from backend.sampling.sampling_function import calc_cond_uncond_batch
    except ImportError:
        pass
    else:
        return ForgeAPI(compile_conditions, pairwise(calc_cond_uncond_batch), "backend.sampling")
    # the ldm_patched line: reForge, Forge Classic, Forge 1.x
    from ldm_patched.modules import samplers
    from modules_forge.forge_sampler import cond_from_a1111_to_patched_ldm

    if hasattr(samplers, "calc_cond_batch"):
        return ForgeAPI(cond_from_a1111_to_patched_ldm, listwise(samplers.calc_cond_batch),
                        "ldm_patched.modules.samplers.calc_cond_batch")
    return ForgeAPI(cond_from_a1111_to_patched_ldm, pairwise(samplers.calc_cond_uncond_batch),
                    "ldm_patched.modules.samplers.calc_cond_uncond_batch")
