"""Backend-neutral per-job state: which pass runs, which step an evaluation belongs to, the windows, the
empty-prompt conditioning and the DNG posteriors. The A1111 and Forge adapters drive it.

Step bookkeeping. The WebUI's ``params.sampling_step`` lags by one (it is set by the sampler's per-step
callback: 0, 0, 1, 2, ...). We key on the denoiser's own evaluation counter ``denoiser.step`` instead:
a run announces ``denoiser.steps`` steps and ``denoiser.total_steps`` evaluations (twice the steps for
second-order samplers, whose last step evaluates once), so evaluation ``k`` belongs to step
``k * steps // total_steps``. Samplers that make fewer calls than announced (DDIM in img2img) simply never
reach the last steps.

A run starts when a denoiser evaluates for the first time (``denoiser.step == 0``) or a new denoiser
object appears: the WebUI builds a new sampler per batch iteration and for the hires pass, so each gets
fresh state (posteriors, records) automatically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from negguide.dng import DNGConfig, DynamicNegativeGuidance
from negguide.predictions import ve_from_vp, vp_from_ve, x0_from_eps_vp
from negguide.windows import StepWindow

from . import conds as C
from .settings import NegGuideSettings


def step_of_eval(call: int, steps: int | None, total_steps: int | None) -> tuple[int, bool]:
    """``(step index, first evaluation of that step?)`` for the ``call``-th model evaluation of a run."""
    if not steps or not total_steps or total_steps <= steps:
        return call, True
    step = call * steps // total_steps
    first = call == 0 or (call - 1) * steps // total_steps != step
    return step, first


ANCESTRAL_HINTS = (" a", "ancestral", "sde", "ddpm", "lcm", "restart")


def is_ancestral(sampler_name: str | None) -> bool:
    n = f" {(sampler_name or '').lower()} "
    return any(h in n for h in (" a ", "ancestral", "sde", "ddpm", "lcm", "restart"))


@dataclass
class RunRecord:
    """One sampling run (a batch iteration's first pass, or its hires pass)."""

    batch_number: int
    is_hr: bool
    steps: int
    tracker: str = ""
    window_mask: list = field(default_factory=list)
    steps_log: list = field(default_factory=list)  # DNG: the core's per-step dicts (step, sigma, p, lambda)
    active_log: list = field(default_factory=list)  # (step, active) per evaluation (windowed)


class DNGRun:
    """Per-run DNG state: the core's :class:`negguide.dng.DynamicNegativeGuidance`, stepped once per sampler
    step (at its first model evaluation; Heun's second evaluation reuses the step's lambda)."""

    def __init__(self, s: NegGuideSettings, batch: int, stochastic: bool, eta: float = 1.0, device=None):
        self.ctl = DynamicNegativeGuidance(dng_config(s), batch, stochastic, eta=eta if eta > 0 else 1.0, device=device)
        self.last_step = -1

    @property
    def name(self) -> str:
        return self.ctl.tracker_name

    @property
    def probes(self) -> int:
        """Hutchinson probe pairs this tracker wants at a step's first evaluation (0: none)."""
        return self.ctl.extra_rows_per_image // 2

    def wants_update(self, step: int, first: bool) -> bool:
        return first and step != self.last_step

    def lam_at(self, step: int, first: bool, x_ve, sigma, d_ref, d_neg, probes=None) -> torch.Tensor:
        """lambda per image for this evaluation; the posterior moves at the first evaluation of a step."""
        if self.wants_update(step, first):
            self.last_step = step
            return self.ctl.step(step, x_ve, sigma, d_ref, d_neg, probes=probes)
        return self.ctl.current_scale()

    @property
    def records(self) -> list:
        return self.ctl.records


def dng_config(s: NegGuideSettings) -> DNGConfig:
    return DNGConfig(
        scale=float(s.lambda0),
        prior=float(s.prior),
        temperature=float(s.temperature),
        offset=float(s.offset),
        p_max=float(s.p_max),
        p_min=min(1e-6, float(s.prior)),
        tracker=s.tracker,
    )


class Run:
    def __init__(
        self,
        job: Job,
        key,
        steps: int,
        total_steps: int,
        is_hr: bool,
        schedule_steps: int | None,
        batch_number: int,
    ):
        self.job, self.key = job, key
        self.steps, self.total_steps = int(steps or 0), int(total_steps or 0)
        self.is_hr, self.schedule_steps = is_hr, schedule_steps
        s = job.settings
        self.window: StepWindow | None = s.hires_window() if is_hr else s.first_pass_window()
        self.record = RunRecord(batch_number, is_hr, self.steps)
        self.dng: DNGRun | None = None
        self.dng_stochastic = False
        self.pending = None  # DNG evaluation in flight (A1111: between on_cfg_denoiser and after_cfg)
        self.last_call = -1
        self.cache: dict = {}

    def window_active(self, step: int, sigma: float | None = None) -> bool:
        if self.window is None:
            return False
        n = max(self.steps, step + 1)
        sched = self.schedule_steps if (self.schedule_steps or 0) > n else None
        return self.window.active(step, n, sigma, sched)


class Job:
    """State for one generation request (``process`` .. ``postprocess``)."""

    def __init__(self, settings: NegGuideSettings, encode_empty, p=None):
        self.settings = settings
        self.encode_empty = encode_empty  # (is_hr: bool) -> one-row empty-prompt conditioning
        self.p = p
        self.runs: list[Run] = []
        self.current: Run | None = None
        self._empty: dict = {}
        self.batch_number = 0
        self.warnings: list[str] = []

    def warn(self, msg: str):
        if msg not in self.warnings:
            self.warnings.append(msg)
            print(f"[negguide] {msg}")

    def empty(self, is_hr: bool):
        if is_hr not in self._empty:
            self._empty[is_hr] = self.encode_empty(is_hr)
        return self._empty[is_hr]

    def run_for(self, denoiser, is_hr: bool, schedule_steps: int | None) -> Run:
        call = int(getattr(denoiser, "step", 0) or 0)
        cur = self.current
        if cur is None or cur.key is not denoiser or call <= cur.last_call:
            cur = Run(
                self,
                denoiser,
                getattr(denoiser, "steps", None),
                getattr(denoiser, "total_steps", None),
                is_hr,
                schedule_steps,
                self.batch_number,
            )
            self.runs.append(cur)
            self.current = cur
        cur.last_call = call
        return cur

    def records(self) -> list[RunRecord]:
        for r in self.runs:
            if r.dng is not None:
                r.record.steps_log = r.dng.records
        return [r.record for r in self.runs]


# --- conditioning builders shared by the adapters ---------------------------------------------------------


def slot_marker(run: Run | None, key: str, c) -> float:
    """The ControlNet marker of conditioning slot ``key`` ("cond" / "uncond"), read once per run (reading it
    costs a device sync; markers do not change within a run)."""
    if run is None:
        return C.marker_of(c)
    k = ("marker", key)
    if k not in run.cache:
        run.cache[k] = C.marker_of(c)
    return run.cache[k]


def empty_rows_like(job: Job, is_hr: bool, slot, n: int, run: Run | None = None, key: str = "uncond"):
    """``n`` rows of the empty prompt, carrying the marker of conditioning ``slot`` (ControlNet); built once
    per run and reused."""
    ref = C._ctx(slot)
    ck = ("empty", key, n, ref.dtype, ref.device, isinstance(slot, dict))
    if run is not None and ck in run.cache:
        return run.cache[ck]
    e = C.to_device(job.empty(is_hr), ref)
    if isinstance(slot, dict) != isinstance(e, dict) or C._ctx(e).shape[-1] != ref.shape[-1]:
        # e.g. the SDXL refiner took over mid-run: its conditionings differ from the base model's
        raise TypeError("negguide: the conditioning changed shape mid-run (refiner switch?); left unchanged")
    out = C.with_marker(C.repeat_rows(e, n), slot_marker(run, key, slot))
    if run is not None:
        run.cache[ck] = out
    return out


def swap_for_dns(job: Job, is_hr: bool, text_cond, text_uncond, run: Run | None = None):
    """DNS (Desai Eq. 19 via 2-term CFG, s = w - 1): cond <- empty prompt, uncond <- the positive prompt.
    Row counts stay; each slot keeps its own ControlNet marker."""
    if C.rows(text_cond) != C.rows(text_uncond):
        raise ValueError("DNS needs one positive row per image (no AND prompts)")
    pos_body = C.strip_known(text_cond, slot_marker(run, "cond", text_cond))
    new_uncond = C.with_marker(pos_body, slot_marker(run, "uncond", text_uncond))
    new_cond = empty_rows_like(job, is_hr, text_cond, C.rows(text_cond), run, key="cond")
    return new_cond, new_uncond


def swap_prompts_for_step(job: Job, run: Run, params, step: int, is_hr: bool) -> None:
    """Windowed and DNS modes, identical on A1111 and Forge: they only rewrite this step's conditionings."""
    mode = job.settings.mode_key
    if mode == "windowed":
        active = run.window_active(step)
        run.record.active_log.append((step, active))
        if not active:
            params.text_uncond = empty_rows_like(job, is_hr, params.text_uncond, C.rows(params.text_uncond), run)
    elif mode == "dns":
        if C.rows(params.text_cond) != C.rows(params.text_uncond):
            job.warn("DNS skipped: the prompt has several AND parts")
            return
        params.text_cond, params.text_uncond = swap_for_dns(job, is_hr, params.text_cond, params.text_uncond, run)


def match_tokens(a, b, empty_chunk, run: Run | None = None):
    """Pad the shorter of the cond (``a``) and negative (``b``) conditionings on the token axis."""
    am, bm = slot_marker(run, "cond", a), slot_marker(run, "uncond", b)
    a_body, b_body = C.strip_known(a, am), C.strip_known(b, bm)
    n = max(C.tokens(a_body), C.tokens(b_body))
    a_body = C.pad_tokens(a_body, n, empty_chunk)
    b_body = C.pad_tokens(b_body, n, empty_chunk)
    return C.with_marker(a_body, am), C.with_marker(b_body, bm)


def sigma_frame(kind: str, x: torch.Tensor, sigma: torch.Tensor, alphas_cumprod: torch.Tensor | None):
    """``(x_ve, sigma_ve, ab)``: the VE state and noise level of an evaluation, and ``abar`` per image
    (``None`` for k-diffusion). ``kind`` is ``"sigma"`` (k-diffusion: x0 at sigma) or ``"timestep"``
    (DDIM/PLMS/UniPC: eps at an integer timestep, x in the VP scaling)."""
    if kind == "sigma":
        return x, sigma, None
    ac = alphas_cumprod.to(device=x.device, dtype=torch.float64)
    t = sigma.round().long().clamp(0, ac.shape[0] - 1)
    ab = ac[t].to(x.dtype)
    return ve_from_vp(x, ab), ((1 - ab) / ab).sqrt(), ab


def to_denoised(pred: torch.Tensor, x: torch.Tensor, ab) -> torch.Tensor:
    """The backend's raw prediction at state ``x`` (its own scaling) as a denoised x0."""
    return pred if ab is None else x0_from_eps_vp(x, pred, ab)


def to_backend_state(x_ve: torch.Tensor, ab) -> torch.Tensor:
    return x_ve if ab is None else vp_from_ve(x_ve, ab)


def dng_correction(
    denoised: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    lam: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Add DNG's negative term to the WebUI's combined prediction.

    The WebUI combined ``empty + w (pos - empty)`` (its uncond rows hold the empty prompt); the core's
    ``guidance.dng_text`` is that plus ``guidance.dng_term = -lambda (neg - pos)``, which is added here (AND
    prompts and mask blending stay the WebUI's).
    ``mask`` (inpainting: 1 where the image may change) keeps the term off the kept region.
    """
    from negguide import guidance as G

    term = G.dng_term(pos, neg, lam.to(pos.dtype))
    if mask is not None:
        term = term * mask
    return denoised + term.to(denoised.dtype)


def finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def isfinite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
