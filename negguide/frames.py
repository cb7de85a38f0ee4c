"""What a backend's state, noise level and model output mean, and their conversion to the sigma frame.

Every diffusion backend writes its state as ``x = a x0 + b eps`` for some per-step pair ``(a, b)``:

=====================  ==================================  ===========================================
parametrisation        ``(a, b)``                          used by
=====================  ==================================  ===========================================
k-diffusion (VE)       ``(1, sigma)``                      A1111 / Forge / ComfyUI samplers
discrete VP (DDPM)     ``(sqrt(abar), sqrt(1 - abar))``    DDIM/PLMS/UniPC in A1111, diffusers schedulers
rectified flow         ``(1 - t, t)``                      SD3 / Flux (``FlowMatchEulerDiscreteScheduler``)
=====================  ==================================  ===========================================

The trackers and the Hutchinson probes of :mod:`negguide.posterior` live in the k-diffusion frame
``x_ve = x / a`` at ``sigma = b / a``, with the denoised prediction ``D = E[x0 | x]``. A :class:`Frame`
converts a backend's raw model output (``"x0"``, ``"eps"``, ``"v"`` or the flow velocity ``"flow"`` =
eps - x0) to ``D`` and back, and a backend's noise level (a sigma, a DDPM timestep, a flow time ``t``) to
``(a, b)``. The guidance rules of :mod:`negguide.guidance` are affine with weights summing to one, so they
are applied to the raw outputs directly; only the posterior and SLD's eps-unit threshold need conversions.

At ``a = 0`` (rectified flow at ``t = 1``) the state is pure noise: the sigma frame does not exist there and
the evaluation carries no evidence about the image (:meth:`Frame.informative` is False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .tensors import per_image as _per_image

PREDICTIONS = ("x0", "eps", "v", "flow")
LEVELS = ("sigma", "timestep", "flow_t")


@dataclass(frozen=True)
class NoiseLevel:
    """``x = a x0 + b eps`` per image (float64, shape ``[B]``, on the device the backend gave its level on:
    reading them never forces a host sync)."""

    a: torch.Tensor
    b: torch.Tensor
    can_be_pure_noise: bool = False  # only rectified flow reaches a = 0 (at t = 1)

    @property
    def sigma(self) -> torch.Tensor:
        """The k-diffusion noise level ``b / a`` (inf where a = 0)."""
        return self.b / self.a

    def select(self, images: torch.Tensor) -> NoiseLevel:
        """The levels of some images of the batch (``images``: indices)."""
        images = images.to(self.a.device)
        return NoiseLevel(self.a[images], self.b[images], self.can_be_pure_noise)

    def informative(self) -> bool:
        """False where the state is pure noise (a = 0) for any image: no posterior evidence there."""
        return not self.can_be_pure_noise or bool((self.a > 0).all())


@dataclass(frozen=True)
class Frame:
    """A backend's parametrisation: how its noise level is given and what its model outputs.

    ``level``: ``"sigma"`` (k-diffusion sigma, state in the VE scaling when ``scaling="ve"`` or in the VP
    scaling ``x / sqrt(1 + sigma^2)`` when ``scaling="vp"``, as the model input of diffusers' Euler-type
    schedulers), ``"timestep"`` (a DDPM timestep indexing ``alphas_cumprod``, fractional values interpolate
    log sigma), ``"flow_t"`` (rectified-flow time in [0, 1]).
    ``prediction``: ``"x0"`` (denoised), ``"eps"``, ``"v"`` (VP only) or ``"flow"`` (velocity eps - x0).
    """

    prediction: str = "x0"
    level: str = "sigma"
    scaling: str = "ve"
    alphas_cumprod: torch.Tensor | None = None
    # alphas_cumprod per device, copied once: a host->device copy at every step would synchronise a GPU loop
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.level not in LEVELS:
            raise ValueError(f"noise level must be one of {LEVELS}, got {self.level!r}")
        if self.scaling not in ("ve", "vp"):
            raise ValueError(f"scaling must be 've' or 'vp', got {self.scaling!r}")
        if self.level == "timestep" and self.alphas_cumprod is None:
            raise ValueError("a timestep noise level needs the model's alphas_cumprod table")
        if self.prediction == "v" and self.level == "flow_t":
            raise ValueError("v-prediction is a VP parametrisation; a flow model predicts 'flow'")
        if self.prediction == "flow" and self.level != "flow_t":
            raise ValueError("a flow-velocity prediction needs the flow time 't' as noise level")

    @property
    def flow(self) -> bool:
        """The state is a rectified-flow interpolation ``(1 - t) x0 + t eps`` (level ``flow_t``), whatever the model
        outputs (ComfyUI hands an x0 prediction for flow models): the modes' compatibility rules key on this."""
        return self.level == "flow_t"

    # --- constructors for the usual backends ------------------------------------------------------------
    @classmethod
    def k_diffusion(cls, prediction: str = "x0") -> Frame:
        """A1111 / Forge / ComfyUI samplers: VE state at sigma, denoised output."""
        return cls(prediction, "sigma", "ve")

    @classmethod
    def discrete_vp(cls, alphas_cumprod: torch.Tensor, prediction: str = "eps") -> Frame:
        """VP state at a DDPM timestep (A1111's DDIM/PLMS/UniPC, diffusers' DDIM/DDPM/UniPC/DPM-Solver)."""
        return cls(prediction, "timestep", "vp", alphas_cumprod.detach().to(torch.float64).cpu())

    @classmethod
    def vp_at_sigma(cls, prediction: str = "eps") -> Frame:
        """VP-scaled model input at a k-diffusion sigma (diffusers' Euler, Euler a, Heun, LMS, DPM++ SDE)."""
        return cls(prediction, "sigma", "vp")

    @classmethod
    def rectified_flow(cls) -> Frame:
        """SD3 / Flux: ``x = (1 - t) x0 + t eps``, velocity output."""
        return cls("flow", "flow_t", "vp")

    # --- noise levels ---------------------------------------------------------------------------------
    def noise_level(self, level, batch: int) -> NoiseLevel:
        """The ``(a, b)`` pair of a backend noise level (scalar or one value per image)."""
        v = level.detach() if torch.is_tensor(level) else torch.as_tensor(level)
        if v.device.type == "mps":  # no float64 on Apple's MPS: the levels are a handful of numbers, use the CPU
            v = v.cpu()
        v = v.to(torch.float64).reshape(-1)
        if v.numel() == 1:
            v = v.expand(batch)
        if v.numel() != batch:
            raise ValueError(f"noise level has {v.numel()} values for a batch of {batch}")
        if self.level == "flow_t":
            t = v.clamp(0.0, 1.0)
            return NoiseLevel(1.0 - t, t, can_be_pure_noise=True)
        if self.level == "timestep":
            abar = _abar_at(self._table_on(v.device), v)
            return NoiseLevel(abar.sqrt(), (1.0 - abar).sqrt())
        if self.scaling == "ve":
            return NoiseLevel(torch.ones_like(v), v)
        return NoiseLevel(1.0 / (1.0 + v * v).sqrt(), v / (1.0 + v * v).sqrt())

    def _table_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._tables:
            self._tables[device] = self.alphas_cumprod.to(device)
        return self._tables[device]

    # --- states ----------------------------------------------------------------------------------------
    def to_ve(self, x: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        """Backend state -> k-diffusion state ``x / a`` (only where ``level.informative()``)."""
        return x / _per_image(level.a, x)

    def from_ve(self, x_ve: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        return x_ve * _per_image(level.a, x_ve)

    # --- predictions -----------------------------------------------------------------------------------
    def denoised(self, pred: torch.Tensor, x: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        """Raw model output at backend state ``x`` -> ``D = E[x0 | x]``."""
        a, b = _per_image(level.a, x), _per_image(level.b, x)
        if self.prediction == "x0":
            return pred
        if self.prediction == "eps":
            return (x - b * pred) / a
        if self.prediction == "v":  # VP: a^2 + b^2 = 1, v = a eps - b x0
            return a * x - b * pred
        return x - b * pred  # flow: a + b = 1, u = eps - x0

    def eps(self, pred: torch.Tensor, x: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        """Raw model output -> its noise prediction ``eps`` (b > 0)."""
        a, b = _per_image(level.a, x), _per_image(level.b, x)
        if self.prediction == "eps":
            return pred
        if self.prediction == "x0":
            return (x - a * pred) / b
        if self.prediction == "v":
            return a * pred + b * x
        return x + a * pred  # flow: eps = x + (1 - t) u

    def from_eps(self, eps: torch.Tensor, x: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        """Noise prediction -> raw model output (the inverse of :meth:`eps`; a > 0 unless eps-prediction)."""
        a, b = _per_image(level.a, x), _per_image(level.b, x)
        if self.prediction == "eps":
            return eps
        if self.prediction == "x0":
            return (x - b * eps) / a
        if self.prediction == "v":
            return (eps - b * x) / a
        return (eps - x) / a


def _abar_at(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``abar`` at integer or fractional timesteps, interpolating log sigma (as k-diffusion does)."""
    table = alphas_cumprod.to(torch.float64)
    t = t.clamp(0, table.shape[0] - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=table.shape[0] - 1)
    w = t - lo
    log_sigma = 0.5 * ((1 - table) / table).log()
    sigma = ((1 - w) * log_sigma[lo] + w * log_sigma[hi]).exp()
    return 1.0 / (1.0 + sigma * sigma)
