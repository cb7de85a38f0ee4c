"""Mirrors comfy/model_sampling.py (ComfyUI a125cd84, and two types of v0.33.0 at 783545f6): what a model's state
means at ComfyUI's sigma."""

import torch


class EPS:
    """x = x0 + sigma eps (SD 1.x/2.x, SDXL); the sampler starts at sqrt(1 + sigma^2) noise at full denoise."""

    def calculate_input(self, sigma, x):
        return x / (sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2 + 1.0) ** 0.5

    def calculate_denoised(self, sigma, output, x):
        return x - output * sigma.reshape(-1, *[1] * (x.ndim - 1))

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * ((1.0 + sigma**2) ** 0.5 if max_denoise else sigma)

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class CONST:
    """Rectified flow (SD3, Flux): x = (1 - t) x0 + t eps with ComfyUI's sigma = t."""

    def calculate_input(self, sigma, x):
        return x

    def calculate_denoised(self, sigma, output, x):
        return x - output * sigma.reshape(-1, *[1] * (x.ndim - 1))

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - sigma)


class V_PREDICTION_DDPM:
    """v0.33 (CogVideoX): the model gets x unscaled and predicts v; x = x0 + sigma eps as EPS."""

    def calculate_input(self, sigma, x):
        return x

    def calculate_denoised(self, sigma, output, x):
        s = sigma.reshape(-1, *[1] * (x.ndim - 1))
        return x / (s**2 + 1.0) ** 0.5 - output * s / (s**2 + 1.0) ** 0.5

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * ((1.0 + sigma**2) ** 0.5 if max_denoise else sigma)

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class IMG_TO_IMG_FLOW(CONST):
    """v0.33 (WAN FlowRVS): sampling starts from the image itself, the model predicts x0 directly."""

    def calculate_denoised(self, sigma, output, x):
        return output

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return 1.0 - latent


class Schedule(torch.nn.Module):
    """ComfyUI builds ``type("ModelSampling", (ModelSamplingX, EPS or CONST), {})``; sigma_max as it keeps it."""

    def __init__(self, sigma_max: float):
        super().__init__()
        self.sigma_max = torch.tensor(sigma_max)


def model_sampling(prediction: type, sigma_max: float):
    return type("ModelSampling", (Schedule, prediction), {})(sigma_max)
