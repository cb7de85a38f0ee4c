"""diffusers schedulers as negguide's core sees them: friendly names, frames, noise levels, sampler families.

A diffusers scheduler keeps its latent in one of three parametrisations; the UNet / transformer is always fed
``scheduler.scale_model_input(latents, t)``, and that model input is what :class:`negguide.run.GuidanceRun`
gets (so that DNG's Hutchinson probe points come back as model inputs):

==============  ==========================================  ====================================================
kind            schedulers                                  model input and its noise level
==============  ==========================================  ====================================================
``ve_sigma``    Euler, Euler a, Heun, LMS                   VE latent scaled to VP by ``scale_model_input``, at
                                                            ``sigmas[step_index]`` (:meth:`Frame.vp_at_sigma`)
``vp_sigma``    DPM-Solver++ (multistep / singlestep),      VP latent at the scheduler's own k-diffusion sigma
                UniPC, DEIS                                 ``sigmas[step_index]`` (exact under Karras sigmas,
                                                            where the rounded timestep is not)
``vp_timestep`` DDIM, DDPM, PNDM (PLMS)                     VP latent at the DDPM timestep ``t``
                                                            (:meth:`Frame.discrete_vp`)
``flow``        FlowMatch Euler / Heun (SD3)                ``x = (1 - t) x0 + t eps`` at ``t = sigmas[idx]``
==============  ==========================================  ====================================================

Second-order schedulers (Heun, PNDM's warm-up) evaluate the model more often than they take steps; the run
gets ``EvaluationClock(steps, len(timesteps))`` so that both halves of a step share one guidance decision.
Whether the sampler injects noise (DNG's transition tracker) is decided by the core from the scheduler's name
and, for DDIM, its ``eta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import EvaluationClock, Frame, SamplerInfo
from .scheduler_names import KINDS, PREDICTIONS, SCHEDULERS, UnsupportedScheduler


def friendly_names(flow: bool | None = None) -> list[str]:
    """The friendly scheduler names, optionally only those for flow (SD3) or diffusion (SD1/SDXL) models."""
    return [n for n, (cls, _, _) in SCHEDULERS.items() if flow is None or (KINDS[cls] == "flow") == flow]


def make_scheduler(name: str, current) -> object:
    """A scheduler of friendly ``name`` built from the pipeline's current scheduler's config (diffusers' way
    of switching schedulers: the noise schedule of the checkpoint is kept)."""
    import diffusers

    if name not in SCHEDULERS:
        raise UnsupportedScheduler(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    cls_name, overrides, _ = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(current.config, **overrides)


def friendly_name(scheduler) -> str:
    """The friendly name of a scheduler instance (its class name when no friendly name matches)."""
    cls = type(scheduler).__name__
    for name, (cls_name, overrides, _) in SCHEDULERS.items():
        if cls_name == cls and all(scheduler.config.get(k) == v for k, v in overrides.items()):
            return name
    return cls


def a1111_name(scheduler) -> str:
    name = friendly_name(scheduler)
    return SCHEDULERS[name][2] if name in SCHEDULERS else name


@dataclass
class SchedulerAdapter:
    """What the core needs to know about one configured scheduler during one sampling pass."""

    scheduler: object
    kind: str
    frame: Frame
    sampler: SamplerInfo
    _timesteps: torch.Tensor | None = None

    @classmethod
    def of(cls, scheduler, flow_model: bool, eta: float = 0.0) -> SchedulerAdapter:
        """Raises :class:`UnsupportedScheduler` with a sentence a user can act on."""
        name = type(scheduler).__name__
        kind = KINDS.get(name)
        supported = ", ".join(friendly_names(flow_model))
        if kind is None:
            raise UnsupportedScheduler(f"{name} is not supported by negguide's diffusers front-end; "
                                       f"supported: {supported}")
        if (kind == "flow") != flow_model:
            model = "a rectified-flow model (SD3)" if flow_model else "a diffusion (eps/v) model"
            raise UnsupportedScheduler(f"{name} does not fit {model}; use one of: {supported}")
        config = scheduler.config
        if name == "PNDMScheduler" and not config.get("skip_prk_steps", False):
            raise UnsupportedScheduler("PNDM with Runge-Kutta warm-up steps (skip_prk_steps=False) is not supported: "
                                       "use PLMS (skip_prk_steps=True, scheduler 'pndm') or another scheduler")
        if config.get("use_flow_sigmas", False) or config.get("prediction_type") == "flow_prediction":
            raise UnsupportedScheduler(f"{name} with flow sigmas is not supported; use flow_euler / flow_heun")
        if kind == "flow":
            frame = Frame.rectified_flow()
        else:
            prediction = PREDICTIONS.get(config.get("prediction_type", "epsilon"))
            if prediction is None:
                raise UnsupportedScheduler(f"prediction type {config.get('prediction_type')!r} is not supported")
            if kind == "vp_timestep":
                frame = Frame.discrete_vp(scheduler.alphas_cumprod, prediction)
            else:
                frame = Frame.vp_at_sigma(prediction)
        return cls(scheduler, kind, frame, sampler_info(scheduler, eta))

    def index(self, evaluation: int) -> int:
        """The scheduler's index of the current model evaluation (its ``step_index`` once it has one)."""
        idx = getattr(self.scheduler, "step_index", None)
        return evaluation if idx is None else int(idx)

    def level(self, evaluation: int, timestep) -> torch.Tensor:
        """The noise level of the model input at this evaluation, in the frame's unit, as a CPU tensor (diffusers
        keeps ``sigmas`` on the CPU; timesteps are read once per pass): the core's noise-level arithmetic then
        launches no device kernels and never waits for the device."""
        if self.kind == "vp_timestep":
            if evaluation == 0 or self._timesteps is None:
                self._timesteps = self.scheduler.timesteps.detach().cpu()  # one host read per pass
            return self._timesteps[evaluation]
        return self.scheduler.sigmas[self.index(evaluation)]

    def final(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The state after the last step in the frame's terms, and its level (None: noise-free)."""
        if self.kind == "vp_timestep":
            final = getattr(self.scheduler, "final_alpha_cumprod", None)
            if final is None or float(final) >= 1.0:
                return latents, None
            return latents, torch.tensor(0)  # DDIM/PLMS with set_alpha_to_one=False end at alphas_cumprod[0]
        sigma = float(self.scheduler.sigmas[-1])
        if sigma <= 0.0:
            return latents, None
        if self.kind == "ve_sigma":  # the latent is VE; the frame is the VP model input
            latents = latents / (sigma**2 + 1) ** 0.5
        return latents, self.scheduler.sigmas[-1]

    def clock(self, steps: int, timesteps) -> EvaluationClock:
        return EvaluationClock(steps, len(timesteps))


def sampler_info(scheduler, eta: float = 0.0) -> SamplerInfo:
    """Whether the scheduler injects noise at every step, as the core reads it from the scheduler's class and solver
    type (``EulerAncestral...``, ``DDPM...``, ``sde-dpmsolver++``) and, for DDIM, ``eta`` (stochastic exactly when
    ``eta > 0``). A FlowMatch scheduler with ``stochastic_sampling`` re-noises fully at every step."""
    name = type(scheduler).__name__
    if name.startswith("FlowMatch"):
        return SamplerInfo(bool(scheduler.config.get("stochastic_sampling", False)))
    return SamplerInfo.from_name(f"{name} {scheduler.config.get('algorithm_type', '')}".strip(),
                                 eta if name == "DDIMScheduler" else None)
