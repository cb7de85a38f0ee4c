"""Mirrors comfy/samplers.py and comfy/k_diffusion/sampling.py (ComfyUI a125cd84), reduced to what the negguide
nodes meet: one model call per ``calc_cond_batch``, ComfyUI's CFG with its hooks, the guider's sampling call with
its wrappers, KSAMPLER and the euler / euler_ancestral / heun loops. Conditionings are single-entry lists without
areas, masks or ControlNets (the real integration tests cover those paths)."""

import math

import torch

from . import patcher_extension
from .patcher_extension import WrapperExecutor, WrappersMP
from .sampler_helpers import convert_cond


def calc_cond_batch(model, conds, x_in, timestep, model_options):
    """Every non-None conditioning of the list at ``x_in``, in ONE ``apply_model`` call; zeros for None."""
    batch = x_in.shape[0]
    used = [i for i, c in enumerate(conds) if c is not None]
    out = [torch.zeros_like(x_in) for _ in conds]
    if not used:
        return out
    context = torch.cat([conds[i][0]["model_conds"]["c_crossattn"].repeat(batch, 1, 1)[:batch] for i in used])
    x = torch.cat([x_in] * len(used))
    t = torch.cat([timestep.reshape(-1).expand(batch)] * len(used))
    output = model.apply_model(x, t, c_crossattn=context, transformer_options=model_options.get("transformer_options"))
    for i, chunk in zip(used, output.chunk(len(used)), strict=True):
        out[i] = chunk
    return out


def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options=None, cond=None, uncond=None):
    model_options = model_options or {}
    if "sampler_cfg_function" in model_options:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": timestep,
                "input": x, "sigma": timestep, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred,
                "model": model, "model_options": model_options}
        result = x - model_options["sampler_cfg_function"](args)
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        result = fn({"denoised": result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
                     "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                     "model_options": model_options, "input": x})
    return result


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options=None, seed=None):
    model_options = model_options or {}
    skip_uncond = math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False)
    conds = [cond, None if skip_uncond else uncond]
    if "sampler_calc_cond_batch_function" in model_options:
        out = model_options["sampler_calc_cond_batch_function"](
            {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options})
    else:
        out = calc_cond_batch(model, conds, x, timestep, model_options)
    for fn in model_options.get("sampler_pre_cfg_function", []):
        out = fn({"conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": timestep, "input": x,
                  "sigma": timestep, "model": model, "model_options": model_options})
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options, cond=cond, uncond=conds[1])


def _clone_options(options):
    return {k: (_clone_options(v) if isinstance(v, dict) else v) for k, v in options.items()}


class CFGGuider:
    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.original_conds = {}
        self.cfg = 1.0

    def set_conds(self, positive, negative):
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg):
        self.cfg = cfg

    def inner_set_conds(self, conds):
        for k, c in conds.items():
            self.original_conds[k] = convert_cond(c)

    def __call__(self, x, timestep, model_options=None, seed=None):
        return self.predict_noise(x, timestep, model_options, seed)

    def predict_noise(self, x, timestep, model_options=None, seed=None):
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative"), self.conds.get("positive"),
                                 self.cfg, model_options=model_options or {}, seed=seed)

    def inner_sample(self, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed):
        for k in self.conds:  # process_conds: the model's inputs from each conditioning
            self.conds[k] = [{**c, "model_conds": {**c["model_conds"], **self.inner_model.extra_conds(**c)}}
                             for c in self.conds[k]]
        options = _clone_options(self.model_options)
        options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        extra_args = {"model_options": options, "seed": seed}
        executor = WrapperExecutor(sampler.sample, sampler, patcher_extension.get_all_wrappers(
            WrappersMP.SAMPLER_SAMPLE, extra_args["model_options"]))
        return executor.execute(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        self.inner_model = self.model_patcher.model
        output = self.inner_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        del self.inner_model
        return output

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        if sigmas.shape[-1] == 0:
            return latent_image
        self.conds = {k: [c.copy() for c in v] for k, v in self.original_conds.items()}
        original_options = self.model_options
        try:
            self.model_options = _clone_options(self.model_options)
            wrappers = self.model_options.setdefault("transformer_options", {}).setdefault("wrappers", {})
            for kind, per_key in self.model_patcher.wrappers.items():  # prepare_model_patcher
                for key, ws in per_key.items():
                    wrappers.setdefault(kind, {}).setdefault(key, []).extend(ws)
            executor = WrapperExecutor(self.outer_sample, self, patcher_extension.get_all_wrappers(
                WrappersMP.OUTER_SAMPLE, self.model_options))
            output = executor.execute(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        finally:
            self.model_options = original_options
        del self.conds
        return output


def sample(model, noise, positive, negative, cfg, sampler, sigmas, latent_image, seed=None):
    """comfy.samplers.sample, what KSampler runs: a fresh CFGGuider per call."""
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler, sigmas, seed=seed)


# --- k-diffusion samplers (comfy/k_diffusion/sampling.py) ----------------------------------------------------------
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0):
    generator = torch.Generator().manual_seed(extra_args.get("seed") or 0)  # default_noise_sampler: one per batch
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        s, s_next = sigmas[i], sigmas[i + 1]
        up = min(s_next, eta * (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)  # get_ancestral_step
        down = (s_next**2 - up**2) ** 0.5
        x = x + (x - denoised) / sigmas[i] * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + torch.randn(x.shape, generator=generator) * s_noise * up
    return x


def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - model(x_2, sigmas[i + 1] * s_in, **extra_args)) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt
    return x


class KSAMPLER:
    def __init__(self, sampler_function, extra_options=None):
        self.sampler_function = sampler_function
        self.extra_options = extra_options or {}

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling

        def model_k(x, sigma, **kwargs):  # KSamplerX0Inpaint without a mask
            return model_wrap(x, sigma, model_options=kwargs["model_options"], seed=kwargs.get("seed"))

        max_denoise = math.isclose(float(sampling.sigma_max), float(sigmas[0]), rel_tol=1e-5)
        x = sampling.noise_scaling(sigmas[0], noise, latent_image, max_denoise)
        samples = self.sampler_function(model_k, x, sigmas, extra_args=extra_args, callback=callback,
                                        disable=disable_pbar, **self.extra_options)
        return sampling.inverse_noise_scaling(sigmas[-1], samples)


def ksampler(name, extra_options=None):
    return KSAMPLER(globals()[f"sample_{name}"], extra_options)


def sampler_object(name):
    return ksampler(name)
