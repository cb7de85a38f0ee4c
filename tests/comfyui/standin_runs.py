"""Helpers of the stand-in tests: conditionings, node calls and sampling runs the way ComfyUI's nodes do them
(KSampler: comfy.samplers.sample with a fresh CFGGuider; SamplerCustomAdvanced: guider.sample)."""

from __future__ import annotations

import comfy.samplers as S
import torch
from comfy.model_patcher import ModelPatcher
from toy_model import ToyModel

import negguide_comfyui as pack

NODES = pack.NODE_CLASS_MAPPINGS
SIGMAS = torch.tensor([14.6, 6.0, 2.0, 0.5, 0.0])
FLOW_SIGMAS = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
DNG = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8, "tracker": "auto"}
WINDOW = {"form": "2-term", "window_unit": "steps"}


def conditioning(seed: int) -> list:
    return [[torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(seed)), {}]]


POSITIVE, NEGATIVE, EMPTY = conditioning(1), conditioning(2), conditioning(3)


def model(**kwargs) -> ModelPatcher:
    return ModelPatcher(ToyModel(**kwargs))


def noise(batch: int = 2, seed: int = 5, channels: int = 4) -> torch.Tensor:
    return torch.randn(batch, channels, 4, 4, generator=torch.Generator().manual_seed(seed))


def ksampler(m, positive=POSITIVE, negative=NEGATIVE, sampler="euler", cfg=6.0, x=None, sigmas=SIGMAS, seed=3):
    x = noise() if x is None else x
    return S.sample(m, x, positive, negative, cfg, S.sampler_object(sampler), sigmas, torch.zeros_like(x), seed=seed)


def custom(guider, sampler="euler", x=None, sigmas=SIGMAS, seed=3):
    x = noise() if x is None else x
    return guider.sample(x, torch.zeros_like(x), S.sampler_object(sampler), sigmas, seed=seed)


def patch(node: str, m, empty=EMPTY, **values):
    return NODES[node]().apply(m, empty, **values)


def guider(node: str, m, positive=POSITIVE, negative=NEGATIVE, empty=EMPTY, **values):
    if "DNS" in node:
        return NODES[node]().get_guider(m, positive, empty, **values)
    return NODES[node]().get_guider(m, positive, empty, negative=negative, **values)
