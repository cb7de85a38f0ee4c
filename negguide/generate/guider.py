"""negguide's modes as a diffusers guider (``BaseGuidance``), for diffusers' modular pipelines.

    from negguide.generate import NegGuideGuider

    guider = NegGuideGuider(mode="dng", guidance_scale=5.0, dng={"tracker": "transition"}, scheduler=pipe.scheduler)
    pipe.update_components(guider=guider)

A modular pipeline's denoise block calls, per model evaluation, ``set_state`` (step, steps, timestep),
``prepare_inputs`` (one batch per branch this step evaluates: ``positive``, ``negative``, ``empty``),
``prepare_models`` / the denoiser / ``cleanup_models`` per batch, then the guider itself on the batches'
``noise_pred``. One adapter class serves every mode: the batches and their combination come from the core's
:class:`negguide.run.GuidanceRun` (one per generation, started at step 0), as in :class:`NegGuidePipeline`.

What the interface cannot express, and so what this guider refuses or leaves to the caller:

* rows at other states than the sampler's: every batch of a step is evaluated at the same latents, so DNG's
  Hutchinson probes (``flow-hutchinson``, and ``flow-gated``, what ``auto`` picks on deterministic schedulers)
  have no place: use ``tracker="transition"`` (stochastic schedulers) or ``"flow-moment"``;
* the empty prompt: the stock blocks pass ``(prompt, negative prompt)`` pairs per input field. Modes that read
  the empty branch (every mode but the unwindowed negative prompt) take a third entry per field
  ``(positive, negative, empty)`` from a denoise block that adds it, or :attr:`NegGuideGuider.empty_inputs`;
* the state and its noise level: the guider reads the denoiser's input when the block calls it (a forward
  pre-hook between ``prepare_models`` and ``cleanup_models``) and the level from ``scheduler`` (given to the
  guider: a guider does not see the pipeline's components);
* the end of the loop: DNG's last posterior update needs the final latents, :meth:`NegGuideGuider.finish`.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput

from .. import GuidanceRun, Rows, SettingsError
from .schedulers import KINDS, SchedulerAdapter
from .settings import build_spec

BRANCH_INDEX = {"positive": 0, "negative": 1, "empty": 2}  # the entries of an input field's tuple


class NegGuideGuider(BaseGuidance):
    """A negguide mode as a diffusers guider; the settings are :class:`NegGuidePipeline`'s call arguments (``mode``
    ``off`` / ``windowed`` / ``np3`` / ``dns`` / ``dng`` / ``sld`` / ``perp_neg`` and their options), ``eta``:
    DDIM's. ``scheduler``: the pipeline's scheduler (not part of the saved config). ``enabled`` False: the
    positive branch alone (diffusers disables guiders for guidance-distilled UNets)."""

    _input_predictions = list(BRANCH_INDEX)
    ignore_for_config = ["scheduler"]

    @register_to_config
    def __init__(self, mode: str = "off", guidance_scale: float = 7.5, window=None, dns_scale: float | None = None,
                 dng: dict | None = None, sld: dict | None = None, perp_neg_scale: float = 1.0, eta: float = 0.0,
                 enabled: bool = True, scheduler=None):
        super().__init__(enabled=enabled)
        self.spec = build_spec(mode, guidance_scale, window, dns_scale, dng, sld, perp_neg_scale)
        self.eta, self.scheduler = eta, scheduler
        self.empty_inputs: dict[str, torch.Tensor] = {}  # the empty branch of fields the block passes as pairs
        self.run: GuidanceRun | None = None  # the current generation's run (records, tracker)
        self._adapter: SchedulerAdapter | None = None
        self._branches: list[str] | None = None  # the batches of the current step, in order
        self._state: torch.Tensor | None = None  # the denoiser's input at this step
        self._hook = None

    # --- the step ---------------------------------------------------------------------------------------------
    def set_state(self, step: int, num_inference_steps: int, timestep) -> None:
        super().set_state(step, num_inference_steps, timestep)
        if step == 0:
            self.run, self._branches = None, None

    def _begin_run(self, batch: int) -> GuidanceRun:
        if self.scheduler is None:
            raise SettingsError(["NegGuideGuider needs the pipeline's scheduler (NegGuideGuider(..., scheduler="
                                 "pipe.scheduler) or guider.scheduler = ...): the noise level of a step is its"])
        scheduler = self.scheduler
        self._adapter = SchedulerAdapter.of(scheduler, KINDS.get(type(scheduler).__name__) == "flow", self.eta)
        mode = self.spec.guidance_mode()
        if mode.probes(self._adapter.sampler):
            raise SettingsError(["a diffusers guider evaluates every batch at the sampler's state: DNG's Hutchinson "
                                 "probes (trackers flow-hutchinson and flow-gated, auto's choice on deterministic "
                                 "schedulers) need other states; choose tracker 'transition' (stochastic schedulers) "
                                 "or 'flow-moment', or use NegGuidePipeline"])
        steps = self._num_inference_steps
        return GuidanceRun(self.spec, batch, self._adapter.frame, self._adapter.sampler, steps=steps,
                           clock=self._adapter.clock(steps, scheduler.timesteps))

    def _level(self):
        return self._adapter.level(self._step, self._timestep)

    def prepare_inputs(self, data: dict) -> list:
        """One batch per branch the step evaluates, in the order of the run's plan; ``data``: field -> tensor
        (shared) or ``(positive, negative[, empty])``."""
        return self._batches(lambda branch: self._fields(data, branch))

    def prepare_inputs_from_block_state(self, data, input_fields: dict) -> list:
        def values(branch: str) -> dict:
            out = {}
            for name, source in input_fields.items():
                keys = source if isinstance(source, tuple) else (source,)
                out[name] = tuple(getattr(data, key, None) for key in keys) if isinstance(source, tuple) \
                    else getattr(data, source, None)
            return self._fields(out, branch)

        return self._batches(values)

    def _batches(self, fields_of) -> list:
        from diffusers.modular_pipelines.modular_pipeline import BlockState

        if not self._enabled:
            self._branches = ["positive"]
        else:
            probe = fields_of("positive")
            batch = next(v.shape[0] for v in probe.values() if torch.is_tensor(v))
            if self.run is None:
                self.run = self._begin_run(batch)
            level = self._level()
            slots = self.run.slots(self.run.step_of(level, self._step), level)
            self._branches = list(dict.fromkeys([slots.cond, slots.uncond, *(r.branch for r in slots.extra)]))
        return [BlockState(**fields_of(branch), **{self._identifier_key: branch}) for branch in self._branches]

    def _fields(self, data: dict, branch: str) -> dict:
        out, index = {}, BRANCH_INDEX[branch]
        for name, value in data.items():
            if not isinstance(value, tuple):
                out[name] = value
            elif index < len(value):
                out[name] = value[index]
            elif all(v is None for v in value):  # an input the pipeline does not use (no IP-Adapter)
                out[name] = None
            elif name in self.empty_inputs:
                out[name] = self.empty_inputs[name]
            else:
                raise SettingsError([f"mode {self.spec.guidance_mode().label!r} reads the empty prompt: give input "
                                     f"field {name!r} as (positive, negative, empty), or set guider.empty_inputs"])
        return out

    # --- the denoiser calls -------------------------------------------------------------------------------------
    def prepare_models(self, denoiser) -> None:
        super().prepare_models(denoiser)
        self._hook = denoiser.register_forward_pre_hook(self._read_state, with_kwargs=True)

    def cleanup_models(self, denoiser) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _read_state(self, module, args, kwargs):
        self._state = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))

    @property
    def is_conditional(self) -> bool:
        return self._branches is not None and self._branches[max(self._count_prepared - 1, 0)] == "positive"

    @property
    def num_conditions(self) -> int:
        if self._branches is not None:
            return len(self._branches)
        return 1 if not self._enabled else len(self.spec.guidance_mode().branches())

    # --- the guidance ------------------------------------------------------------------------------------------
    def forward(self, **predictions: torch.Tensor) -> GuiderOutput:
        if not self._enabled:
            return GuiderOutput(pred=predictions["positive"], pred_cond=predictions["positive"], pred_uncond=None)
        plan = self.run.plan(self._state, self._level(), evaluation=self._step)
        if [g.branch for g in plan.groups] != self._branches:
            raise RuntimeError(f"the step evaluated {self._branches}, the run planned "
                               f"{[(g.branch, g.probe) for g in plan.groups]}")
        guided = self.run.combine(plan, {Rows(b): predictions[b] for b in self._branches})
        return GuiderOutput(pred=guided, pred_cond=predictions[plan.cond_branch],
                            pred_uncond=predictions[plan.uncond_branch])

    def finish(self, latents: torch.Tensor) -> torch.Tensor | None:
        """After the loop, with the final latents: DNG's last posterior update; returns its final posterior per image
        (None for the other modes)."""
        if self.run is None:
            return None
        x, level = self._adapter.final(latents)
        return self.run.finish(x, level)
