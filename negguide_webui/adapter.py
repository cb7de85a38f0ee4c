"""What the A1111 and Forge adapters share: the job they serve, the foreign-denoiser check, and a pass's run.

A WebUI builds a new CFG denoiser per batch iteration and for the hires pass; a callback that sees the denoiser of
another job (one that died before its ``postprocess``) removes the adapter's callbacks, so nothing leaks.
"""

from __future__ import annotations

from negguide import EvaluationClock, Frame, GuidanceRun

from .job import Job
from .pass_info import cfg_scale, probe_generators, sampler_info, schedule_steps


class CFGAdapter:
    """Base of the adapters: ``register`` / ``remove`` / ``before_sampling`` are the program's own."""

    def __init__(self, job: Job, p, backend):
        self.job, self.p, self.backend = job, p, backend
        self.callbacks = backend.callbacks
        self.registered = False

    def remove(self) -> None:
        raise NotImplementedError

    def foreign(self, denoiser) -> bool:
        """True (and the callbacks removed) for a denoiser of another job."""
        owner = getattr(denoiser, "p", None)
        if owner is not None and owner is not self.p:
            self.remove()
            return True
        return False

    def frame(self, denoiser) -> Frame:
        """How the program's denoiser hands its state and prediction to the callbacks."""
        raise NotImplementedError

    def new_run(self, denoiser, batch: int, is_hr: bool) -> GuidanceRun:
        """The core's run of a sampling pass: its steps and evaluations as the denoiser announces them (twice the
        steps for second-order samplers), img2img's place in the schedule, one probe generator per image seed."""
        p = self.p
        steps = int(getattr(denoiser, "steps", None) or getattr(p, "steps", 1))
        clock = EvaluationClock(steps, getattr(denoiser, "total_steps", None))
        return GuidanceRun(self.job.settings.spec(cfg_scale(p, is_hr), is_hr), batch, self.frame(denoiser),
                           sampler_info(p, self.backend, is_hr), clock=clock, schedule_steps=schedule_steps(p, is_hr),
                           generator=probe_generators(p, batch, is_hr))
