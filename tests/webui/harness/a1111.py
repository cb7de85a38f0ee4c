"""A test harness that behaves like AUTOMATIC1111 WebUI 1.10 around the CFG denoiser.

Written for negguide (not copied): it mirrors the batching and the callback order of
``modules/sd_samplers_cfg_denoiser.py`` (``CFGDenoiser.forward``) of AUTOMATIC1111/stable-diffusion-webui
at commit 029adbe5318b57c04dbc0d92273cce38e1ecf457 (1.10 line; the same forward as the v1.10.0 release),
the script hook order of ``modules/processing.py`` (``process_images_inner``, ``sample_hr_pass``), the
step bookkeeping of ``modules/sd_samplers_common.py`` (``launch_sampling``, ``callback_state``,
``setup_img2img_steps``) and the callback registry of ``modules/script_callbacks.py``.

What is mirrored, because the extension depends on it:

* ``x_in`` / ``sigma_in`` / ``image_cond_in`` hold the cond rows (one per AND sub-prompt per image) then
  the B uncond rows; ``on_cfg_denoiser`` may replace ``x``, ``sigma``, ``image_cond``, ``text_cond``,
  ``text_uncond``; afterwards the uncond rows are ``x_out[-uncond.shape[0]:]`` and cond rows are read at the
  indices of ``conds_list``;
* skipped uncond (NGMS ``s_min_uncond`` every other step, ``skip_early_cond``): the uncond rows are dropped
  and refilled with copies of each image's first cond row;
* token-length mismatch: ``pad_cond_uncond`` / ``pad_cond_uncond_v0`` options, else separate UNet calls;
  ``batch_cond_uncond`` off: one call per ``batch_size`` rows;
* ``on_cfg_denoised`` sees ``x_out`` (changes must be in place: the forward keeps using its own ``x_out``),
  ``on_cfg_after_cfg`` may replace the combined prediction;
* ``params.sampling_step`` is ``state.sampling_step``, set by the sampler's per-step callback, so it runs
  0, 0, 1, 2, ...; the denoiser's own ``step`` counts model evaluations;
* second-order samplers (Heun) evaluate twice per step (the last step once) with ``total_steps = 2 * steps``;
  DDIM is a timestep sampler: the model hands eps and ``sigma`` holds timesteps;
* a new sampler (so a new denoiser) per batch iteration and for the hires pass; ``p.is_hr_pass``.
"""

from __future__ import annotations

import math
import re
import time
import traceback
from dataclasses import dataclass, field

import torch
from schedule_stand_ins import evenly_spaced_sigmas, sigma_to_t

from .tinysd import TinySD, add_marker


class InterruptedException(BaseException):
    pass


@dataclass
class Opts:
    batch_cond_uncond: bool = True
    pad_cond_uncond: bool = False
    pad_cond_uncond_v0: bool = False
    s_min_uncond: float = 0.0  # the NGMS option (A1111 copies it into p.s_min_uncond; reForge reads it here)
    s_min_uncond_all: bool = False
    skip_early_cond: float = 0.0
    img2img_fix_steps: bool = False


@dataclass
class State:
    interrupted: bool = False
    skipped: bool = False
    sampling_step: int = 0
    sampling_steps: int = 0


class CFGDenoiserParams:
    def __init__(
        self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None
    ):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x, self.sampling_step, self.total_sampling_steps = x, sampling_step, total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x, self.sampling_step, self.total_sampling_steps = x, sampling_step, total_sampling_steps


class Callbacks:
    """The callback registry of ``modules/script_callbacks.py``: exceptions in a callback are reported
    (here: kept in ``errors``) and the job goes on, as in the WebUI."""

    def __init__(self):
        self.lists = {"cfg_denoiser": [], "cfg_denoised": [], "cfg_after_cfg": []}
        self.errors: list[str] = []
        self.seconds = 0.0  # time spent in callbacks (benchmarks read it)

    def on_cfg_denoiser(self, fn):
        self.lists["cfg_denoiser"].append(fn)

    def on_cfg_denoised(self, fn):
        self.lists["cfg_denoised"].append(fn)

    def on_cfg_after_cfg(self, fn):
        self.lists["cfg_after_cfg"].append(fn)

    def remove_callbacks_for_function(self, fn):
        for lst in self.lists.values():
            for c in [c for c in lst if c == fn]:
                lst.remove(c)

    def count(self) -> int:
        return sum(len(v) for v in self.lists.values())

    def _fire(self, name, params):
        t0 = time.perf_counter()
        try:
            self._fire_all(name, params)
        finally:
            self.seconds += time.perf_counter() - t0

    def _fire_all(self, name, params):
        for fn in list(self.lists[name]):
            try:
                fn(params)
            except Exception:
                self.errors.append(traceback.format_exc())

    def cfg_denoiser_callback(self, params):
        self._fire("cfg_denoiser", params)

    def cfg_denoised_callback(self, params):
        self._fire("cfg_denoised", params)

    def cfg_after_cfg_callback(self, params):
        self._fire("cfg_after_cfg", params)


class WebUI:
    """The bits of ``modules.shared`` the denoiser reads: the model, options, state, callbacks."""

    def __init__(self, sd_model: TinySD, opts: Opts | None = None):
        self.sd_model = sd_model
        self.opts = opts or Opts()
        self.state = State()
        self.callbacks = Callbacks()
        self.backend = "a1111"


# --- prompts: scheduled and composable conditionings (modules/prompt_parser.py) ---------------------------


@dataclass
class ScheduledPromptConditioning:
    end_at_step: int
    cond: object  # [tokens, dim] tensor or dict of per-row tensors


@dataclass
class ComposableScheduledPromptConditioning:
    schedules: list
    weight: float = 1.0


@dataclass
class MulticondLearnedConditioning:
    shape: tuple
    batch: list  # per image: list[ComposableScheduledPromptConditioning]


_EDIT = re.compile(r"^\[([^:\[\]]*):([^:\[\]]*):(\d+)\]$")


def _row(c, i):
    return {k: v[i] for k, v in c.items()} if isinstance(c, dict) else c[i]


class DictWithShape(dict):
    """``modules/prompt_parser.py``: the batch of SDXL conditionings ``reconstruct_cond_batch`` returns; the
    Forge line (Forge, reForge, Classic, Neo) adds ``advanced_indexing``, which its sampler calls on every one."""

    def __init__(self, x, shape=None):
        super().__init__()
        self.update(x)

    @property
    def shape(self):
        return self["crossattn"].shape

    def advanced_indexing(self, item):
        return DictWithShape({k: v[item] for k, v in self.items() if isinstance(v, torch.Tensor)})


def _stack(rows):
    if isinstance(rows[0], dict):
        return DictWithShape({k: torch.stack([r[k] for r in rows]) for k in rows[0]})
    return torch.stack(rows)


def get_learned_conditioning(model: TinySD, prompts: list[str], steps: int, width: int, height: int, marker=None):
    """Per prompt a schedule. Whole-prompt editing ``[a:b:N]``: ``a`` up to step N, then ``b``."""
    out = []
    for pr in prompts:
        m = _EDIT.match(pr.strip())
        parts = [(m.group(1), int(m.group(3))), (m.group(2), steps)] if m else [(pr, steps)]
        sched = []
        for text, end in parts:
            c = model.get_learned_conditioning([text], width=width, height=height)
            if marker is not None:
                c = add_marker(c, marker)
            sched.append(ScheduledPromptConditioning(end, _row(c, 0)))
        out.append(sched)
    return out


def get_multicond_learned_conditioning(model, prompts, steps, width, height, marker=None):
    batch = []
    for pr in prompts:
        subs = [s.strip() for s in pr.split(" AND ")]
        batch.append(
            [
                ComposableScheduledPromptConditioning(
                    get_learned_conditioning(model, [s], steps, width, height, marker)[0]
                )
                for s in subs
            ]
        )
    return MulticondLearnedConditioning((len(prompts),), batch)


def _pick(sched, step):
    for s in sched:
        if step <= s.end_at_step:
            return s.cond
    return sched[-1].cond


def _pad_rows_to(rows):
    """Rows of different token counts in one batch: repeat the last token (the WebUI's multicond way)."""
    ctx = [r["crossattn"] if isinstance(r, dict) else r for r in rows]
    n = max(c.shape[0] for c in ctx)
    out = []
    for r, c in zip(rows, ctx, strict=True):
        if c.shape[0] < n:
            c = torch.cat([c, c[-1:].expand(n - c.shape[0], -1)])
        out.append({**r, "crossattn": c} if isinstance(r, dict) else c)
    return out


def reconstruct_cond_batch(c, step):
    return _stack(_pad_rows_to([_pick(sched, step) for sched in c]))


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, step):
    rows, conds_list = [], []
    for composables in c.batch:
        lst = []
        for comp in composables:
            lst.append((len(rows), comp.weight))
            rows.append(_pick(comp.schedules, step))
        conds_list.append(lst)
    return conds_list, _stack(_pad_rows_to(rows))


# --- model wraps -------------------------------------------------------------------------------------------


def _cat(cs):
    if not isinstance(cs[0], dict):
        return torch.cat(cs)
    return {k: torch.cat([c[k] for c in cs]) for k in cs[0]}


def _sub(c, a, b):
    return {k: v[a:b] for k, v in c.items()} if isinstance(c, dict) else c[a:b]


class CompVisDenoiser(torch.nn.Module):
    """k-diffusion's wrap: VE state x at sigma -> denoised."""

    def __init__(self, model: TinySD):
        super().__init__()
        self.inner_model = model
        self.schedule = model.schedule
        self.sigmas = model.schedule.sigmas.to(torch.float32)

    def sigma_to_t(self, sigma):
        return sigma_to_t(self.schedule, sigma.detach().cpu().to(torch.float64)).to(sigma.device, torch.float32)

    def forward(self, x, sigma, cond):
        c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
        eps = self.inner_model.apply_model(x * c_in[:, None, None, None], self.sigma_to_t(sigma), cond)
        return x - eps * sigma[:, None, None, None]


class CompVisTimestepsDenoiser(torch.nn.Module):
    def __init__(self, model: TinySD):
        super().__init__()
        self.inner_model = model

    def forward(self, x, t, cond):
        return self.inner_model.apply_model(x, t, cond)


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler, webui: WebUI):
        super().__init__()
        self.sampler, self.webui = sampler, webui
        self.mask = self.nmask = self.init_latent = None
        self.steps = None
        self.total_steps = None
        self.step = 0
        self.p = None
        self.padded_cond_uncond = False
        self.model_wrap = None

    @property
    def inner_model(self):
        raise NotImplementedError

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-(uncond["crossattn"] if isinstance(uncond, dict) else uncond).shape[0] :]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def _pad(self, tensor, uncond):
        empty = self.webui.sd_model.cond_stage_model_empty_prompt

        def ctx(c):
            return c["crossattn"] if isinstance(c, dict) else c

        def put(c, t):
            return {**c, "crossattn": t} if isinstance(c, dict) else t

        n = (ctx(tensor).shape[1] - ctx(uncond).shape[1]) // empty.shape[1]
        if n < 0:
            tensor = put(tensor, torch.cat([ctx(tensor), empty.repeat(ctx(tensor).shape[0], -n, 1)], dim=1))
        elif n > 0:
            uncond = put(uncond, torch.cat([ctx(uncond), empty.repeat(ctx(uncond).shape[0], n, 1)], dim=1))
        self.padded_cond_uncond = True
        return tensor, uncond

    def _pad_v0(self, tensor, uncond):
        u = uncond["crossattn"] if isinstance(uncond, dict) else uncond
        t = tensor["crossattn"] if isinstance(tensor, dict) else tensor
        if u.shape[1] < t.shape[1]:
            u = torch.hstack([u, u[:, -1:].repeat(1, t.shape[1] - u.shape[1], 1)])
        else:
            u = u[:, : t.shape[1]]
        return tensor, ({**uncond, "crossattn": u} if isinstance(uncond, dict) else u)

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        w = self.webui
        state, opts = w.state, w.opts
        if state.interrupted or state.skipped:
            raise InterruptedException

        conds_list, tensor = reconstruct_multicond_batch(cond, self.step)
        uncond = reconstruct_cond_batch(uncond, self.step)

        batch_size = len(conds_list)
        repeats = [len(conds_list[i]) for i in range(batch_size)]
        if isinstance(uncond, dict):

            def make_condition_dict(c_crossattn, c_concat):
                return {**c_crossattn, "c_concat": [c_concat]}
        else:

            def make_condition_dict(c_crossattn, c_concat):
                return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        def rep(v):
            return torch.cat([torch.stack([v[i] for _ in range(n)]) for i, n in enumerate(repeats)])

        x_in = torch.cat([rep(x), x])
        sigma_in = torch.cat([rep(sigma), sigma])
        image_cond_in = torch.cat([rep(image_cond), image_cond])

        params = CFGDenoiserParams(
            x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, tensor, uncond, self
        )
        w.callbacks.cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond
        skip_uncond = False

        # (the 1.10 release guards this with ``skip_early_cond != 0``; the dev commit above did not)
        if opts.skip_early_cond != 0.0 and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
            x_in, sigma_in = x_in[:-batch_size], sigma_in[:-batch_size]
        if (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
            x_in, sigma_in = x_in[:-batch_size], sigma_in[:-batch_size]

        def ntok(c):
            return (c["crossattn"] if isinstance(c, dict) else c).shape[1]

        def nrows(c):
            return (c["crossattn"] if isinstance(c, dict) else c).shape[0]

        self.padded_cond_uncond = False
        if opts.pad_cond_uncond_v0 and ntok(tensor) != ntok(uncond):
            tensor, uncond = self._pad_v0(tensor, uncond)
        elif opts.pad_cond_uncond and ntok(tensor) != ntok(uncond):
            tensor, uncond = self._pad(tensor, uncond)

        if ntok(tensor) == ntok(uncond) or skip_uncond:
            cond_in = tensor if skip_uncond else _cat([tensor, uncond])
            if opts.batch_cond_uncond:
                x_out = self.inner_model(x_in, sigma_in, cond=make_condition_dict(cond_in, image_cond_in))
            else:
                x_out = torch.zeros_like(x_in)
                for a in range(0, x_out.shape[0], batch_size):
                    b = a + batch_size
                    x_out[a:b] = self.inner_model(
                        x_in[a:b],
                        sigma_in[a:b],
                        cond=make_condition_dict(_sub(cond_in, a, b), image_cond_in[a:b]),
                    )
        else:
            x_out = torch.zeros_like(x_in)
            bs = batch_size * 2 if opts.batch_cond_uncond else batch_size
            for a in range(0, nrows(tensor), bs):
                b = min(a + bs, nrows(tensor))
                x_out[a:b] = self.inner_model(
                    x_in[a:b], sigma_in[a:b], cond=make_condition_dict(_sub(tensor, a, b), image_cond_in[a:b])
                )
            if not skip_uncond:
                n = nrows(uncond)
                x_out[-n:] = self.inner_model(
                    x_in[-n:], sigma_in[-n:], cond=make_condition_dict(uncond, image_cond_in[-n:])
                )

        denoised_image_indexes = [c[0][0] for c in conds_list]
        if skip_uncond:
            fake_uncond = torch.cat([x_out[i : i + 1] for i in denoised_image_indexes])
            x_out = torch.cat([x_out, fake_uncond])

        w.callbacks.cfg_denoised_callback(
            CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model)
        )
        denoised = self.combine_denoised(x_out, conds_list, uncond, 1.0 if skip_uncond else cond_scale)
        if self.mask is not None:
            denoised = denoised * self.nmask + self.init_latent * self.mask

        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        w.callbacks.cfg_after_cfg_callback(after)
        denoised = after.x
        self.step += 1
        return denoised


class CFGDenoiserKDiffusion(CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = CompVisDenoiser(self.webui.sd_model)
        return self.model_wrap


class CFGDenoiserTimesteps(CFGDenoiser):
    def __init__(self, sampler, webui):
        super().__init__(sampler, webui)
        self.alphas = webui.sd_model.alphas_cumprod

    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = CompVisTimestepsDenoiser(self.webui.sd_model)
        return self.model_wrap


# --- samplers ----------------------------------------------------------------------------------------------

SAMPLERS = {  # name: (kind, second_order, ancestral)
    "Euler": ("k", False, False),
    "Euler a": ("k", False, True),
    "Heun": ("k", True, False),
    "DPM++ 2M": ("k", False, False),
    "DDIM": ("t", False, False),
}


def setup_img2img_steps(p, opts, steps=None):
    if opts.img2img_fix_steps or steps is not None:
        requested = steps or p.steps
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


class Sampler:
    def __init__(self, name: str, webui: WebUI):
        self.name = name
        self.kind, self.second_order, self.ancestral = SAMPLERS[name]
        self.webui = webui
        cls = CFGDenoiserKDiffusion if self.kind == "k" else CFGDenoiserTimesteps
        self.model_wrap_cfg = cls(self, webui)
        self.sampler_extra_args = None
        self.last_latent = None
        self.p = None

    def callback_state(self, i):
        self.webui.state.sampling_step = i

    def total_steps(self, steps):
        return steps * 2 if self.second_order else steps

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.total_steps(steps)
        self.webui.state.sampling_steps = steps
        self.webui.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0

    def _sigmas(self, n):
        return evenly_spaced_sigmas(self.webui.sd_model.schedule, n).to(self.webui.sd_model.device, torch.float32)

    def _timesteps(self, n):
        return (torch.arange(0, 1000, 1000 // n)[:n] + 1).flip(0)

    def _model(self, x, s, c, uc, image_cond):
        return self.model_wrap_cfg(
            x,
            s,
            uncond=uc,
            cond=c,
            cond_scale=self.p.cfg_scale,
            s_min_uncond=getattr(self.p, "s_min_uncond", 0.0),
            image_cond=image_cond,
        )

    def _run_k(self, x, sigmas, c, uc, image_cond, gen):
        n = len(sigmas) - 1
        for i in range(n):
            s, s_next = sigmas[i], sigmas[i + 1]
            sv = s * x.new_ones(x.shape[0])
            d0 = self._model(x, sv, c, uc, image_cond)
            self.last_latent = d0
            if self.ancestral:
                s_up = min(float(s_next), float((s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5))
                s_down = (float(s_next) ** 2 - s_up**2) ** 0.5
                x = x + (x - d0) / s * (s_down - s)
                if s_next > 0:  # per-image generators, like the WebUI's ImageRNG
                    x = x + torch.stack([torch.randn(x.shape[1:], generator=g) for g in gen]).to(x) * s_up
            elif self.second_order and s_next > 0:
                dx = (x - d0) / s
                x2 = x + dx * (s_next - s)
                d1 = self._model(x2, s_next * x.new_ones(x.shape[0]), c, uc, image_cond)
                x = x + (dx + (x2 - d1) / s_next) / 2 * (s_next - s)
            else:
                x = x + (x - d0) / s * (s_next - s)
            self.callback_state(i)
        return x

    def _run_ddim(self, x, ts, c, uc, image_cond):
        ac = self.webui.sd_model.alphas_cumprod
        for i, t in enumerate(ts):
            tv = t.repeat(x.shape[0]).to(x.device, torch.float32)
            eps = self._model(x, tv, c, uc, image_cond)
            a = ac[int(t)]
            a_prev = ac[int(ts[i + 1])] if i + 1 < len(ts) else torch.tensor(1.0)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            self.last_latent = x0
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            self.callback_state(i)
        return x

    def _extra_args(self, p, c, uc, image_cond):
        self.sampler_extra_args = {
            "cond": c,
            "image_cond": image_cond,
            "uncond": uc,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": getattr(p, "s_min_uncond", 0.0),
        }

    def sample(self, p, x, c, uc, steps, image_cond):
        self.initialize(p)
        self._extra_args(p, c, uc, image_cond)
        gen = [torch.Generator().manual_seed(int(sd) + 7) for sd in p.seeds]
        if self.kind == "k":
            sigmas = self._sigmas(steps)
            return self.launch_sampling(steps, lambda: self._run_k(x * sigmas[0], sigmas, c, uc, image_cond, gen))
        ts = self._timesteps(steps)
        return self.launch_sampling(steps, lambda: self._run_ddim(x, ts, c, uc, image_cond))

    def sample_img2img(self, p, x, noise, c, uc, steps, image_cond):
        self.initialize(p)
        self._extra_args(p, c, uc, image_cond)
        gen = [torch.Generator().manual_seed(int(sd) + 11) for sd in p.seeds]
        full, t_enc = setup_img2img_steps(p, self.webui.opts, steps)
        if self.kind == "k":
            sigmas = self._sigmas(full)
            sched = sigmas[full - t_enc - 1 :]
            xi = x + noise * sched[0]
            self.model_wrap_cfg.init_latent = x
            return self.launch_sampling(t_enc + 1, lambda: self._run_k(xi, sched, c, uc, image_cond, gen))
        ts = self._timesteps(full)[full - t_enc - 1 :]
        # DDIM in img2img makes fewer model calls than it announces (the WebUI runs t_enc of them)
        ts = ts[1:] if len(ts) > 1 else ts
        a = self.webui.sd_model.alphas_cumprod[int(ts[0])]
        xi = a.sqrt() * x + (1 - a).sqrt() * noise
        return self.launch_sampling(t_enc + 1, lambda: self._run_ddim(xi, ts, c, uc, image_cond))


# --- processing ---------------------------------------------------------------------------------------


@dataclass
class Processed:
    images: list
    infotexts: list
    extra_images: list = field(default_factory=list)
    latents: list = field(default_factory=list)


@dataclass
class PostprocessImageArgs:
    image: object


@dataclass
class Processing:
    """The attributes of ``StableDiffusionProcessing`` that scripts read."""

    webui: WebUI
    prompt: str | list = "a photo of a cat"
    negative_prompt: str | list = "dog"
    seed: int = 1
    steps: int = 12
    cfg_scale: float = 7.0
    width: int = 64
    height: int = 64
    batch_size: int = 1
    n_iter: int = 1
    sampler_name: str = "Euler"
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_second_pass_steps: int = 0
    hr_sampler_name: str | None = None
    denoising_strength: float = 0.5
    init_latent: torch.Tensor | None = None  # img2img when set
    s_min_uncond: float = 0.0
    controlnet_markers: bool = False
    scripts: object = None
    script_args: list = field(default_factory=list)
    extra_generation_params: dict = field(default_factory=dict)
    is_hr_pass: bool = False
    is_api: bool = False
    interrupt_at: tuple | None = None  # (batch, pass, call) -> state.interrupted (test helper)

    def __post_init__(self):
        self.sd_model = self.webui.sd_model
        self.sampler = None
        self.iteration = 0
        self.hr_upscale_to_x = int(self.width * self.hr_scale)
        self.hr_upscale_to_y = int(self.height * self.hr_scale)

    @property
    def is_img2img(self) -> bool:
        return self.init_latent is not None

    def _list(self, v):
        return list(v) if isinstance(v, list) else [v] * (self.batch_size * self.n_iter)

    @property
    def all_prompts(self):
        return self._list(self.prompt)

    @property
    def all_negative_prompts(self):
        return self._list(self.negative_prompt)


class ScriptRunner:
    """``modules/scripts.py``'s runner for always-on scripts: each hook gets ``p`` and its own args."""

    def __init__(self, scripts: list, args: list):
        self.alwayson_scripts = scripts
        pos = 0
        for s in scripts:
            s.args_from, s.args_to = pos, pos + s.n_args
            pos = s.args_to
        self.args = args

    def _call(self, name, p, *a, **kw):
        for s in self.alwayson_scripts:
            fn = getattr(s, name, None)
            if fn is None:
                continue
            fn(p, *a, *self.args[s.args_from : s.args_to], **kw)

    def process(self, p):
        self._call("process", p)

    def before_process_batch(self, p, **kw):
        self._call("before_process_batch", p, **kw)

    def process_batch(self, p, **kw):
        self._call("process_batch", p, **kw)

    def process_before_every_sampling(self, p, **kw):
        self._call("process_before_every_sampling", p, **kw)

    def before_hr(self, p):
        self._call("before_hr", p)

    def postprocess_batch(self, p, images, **kw):
        self._call("postprocess_batch", p, images, **kw)

    def postprocess_image(self, p, pp):
        self._call("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        self._call("postprocess", p, processed)


def _noise(p, seeds, shape):
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def process_images(p: Processing) -> Processed:
    """``process_images_inner``: the script hooks in the WebUI's order around the sampling of each batch."""
    with torch.no_grad():
        return _process_images(p)


def _process_images(p: Processing) -> Processed:
    w = p.webui
    w.state.interrupted = w.state.skipped = False
    model = p.sd_model
    if p.scripts is not None:
        p.scripts.process(p)
    images, infotexts, latents = [], [], []
    all_prompts, all_negs = p.all_prompts, p.all_negative_prompts
    for n in range(p.n_iter):
        p.iteration = n
        if w.state.skipped:
            w.state.skipped = False
        if w.state.interrupted:
            break
        sl = slice(n * p.batch_size, (n + 1) * p.batch_size)
        p.prompts, p.negative_prompts = all_prompts[sl], all_negs[sl]
        p.seeds = [p.seed + i for i in range(n * p.batch_size, (n + 1) * p.batch_size)]
        if p.scripts is not None:
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds)
            p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds)
        mk = (True, False) if p.controlnet_markers else (None, None)
        c = get_multicond_learned_conditioning(model, p.prompts, p.steps, p.width, p.height, mk[0])
        uc = get_learned_conditioning(model, p.negative_prompts, p.steps, p.width, p.height, mk[1])
        lat = (p.height // 8, p.width // 8)
        x = _noise(p, p.seeds, (4, *lat)).to(model.device)
        image_cond = x.new_zeros(x.shape[0], 5, 1, 1)
        p.sampler = Sampler(p.sampler_name, w)
        if p.scripts is not None:
            p.scripts.process_before_every_sampling(p, x=x, noise=x, c=c, uc=uc)
        if p.is_img2img:
            init = p.init_latent.expand(x.shape[0], -1, -1, -1)
            samples = p.sampler.sample_img2img(p, init, x, c, uc, None, image_cond)
        else:
            samples = p.sampler.sample(p, x, c, uc, p.steps, image_cond)
        if p.enable_hr and not w.state.interrupted:
            samples = _hires(p, samples, mk)
        if p.scripts is not None:
            p.scripts.postprocess_batch(p, samples, batch_number=n)
        for i in range(samples.shape[0]):
            latents.append(samples[i])
            img = _to_image(samples[i])
            if p.scripts is not None:
                pp = PostprocessImageArgs(img)
                p.scripts.postprocess_image(p, pp)
                img = pp.image
            images.append(img)
            infotexts.append(create_infotext(p, n * p.batch_size + i))
    res = Processed(images, infotexts, latents=latents)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res


def _hires(p: Processing, samples, mk):
    w = p.webui
    p.is_hr_pass = True
    try:
        if p.scripts is not None:
            p.scripts.before_hr(p)
        model = p.sd_model
        hr_c = get_multicond_learned_conditioning(
            model, p.prompts, p.steps, p.hr_upscale_to_x, p.hr_upscale_to_y, mk[0]
        )
        hr_uc = get_learned_conditioning(
            model, p.negative_prompts, p.steps, p.hr_upscale_to_x, p.hr_upscale_to_y, mk[1]
        )
        up = torch.nn.functional.interpolate(samples, scale_factor=p.hr_scale, mode="nearest")
        noise = _noise(p, [s + 100 for s in p.seeds], tuple(up.shape[1:])).to(up.device)
        p.sampler = Sampler(p.hr_sampler_name or p.sampler_name, w)
        if p.scripts is not None:
            p.scripts.process_before_every_sampling(p, x=up, noise=noise, c=hr_c, uc=hr_uc)
        image_cond = up.new_zeros(up.shape[0], 5, 1, 1)
        return p.sampler.sample_img2img(p, up, noise, hr_c, hr_uc, p.hr_second_pass_steps or p.steps, image_cond)
    finally:
        p.is_hr_pass = False


def _to_image(latent):
    from PIL import Image

    a = latent[:3].float()
    a = ((a - a.min()) / (a.max() - a.min() + 1e-8) * 255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(a)


def create_infotext(p: Processing, index: int) -> str:
    gen = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "CFG scale": p.cfg_scale,
        "Seed": p.seed + index,
        "Size": f"{p.width}x{p.height}",
        **p.extra_generation_params,
    }
    params = ", ".join(f"{k}: {v}" for k, v in gen.items() if v is not None)
    return f"{p.all_prompts[index]}\nNegative prompt: {p.all_negative_prompts[index]}\n{params}"


def parse_infotext(text: str) -> dict:
    """The key-value part of an infotext, as ``parse_generation_parameters`` yields it (strings)."""
    last = text.strip().split("\n")[-1]
    out = {}
    for m in re.finditer(r"\s*([\w ,./+()-]+):\s*(\"(?:\\.|[^\\\"])+\"|[^,]*)(?:,|$)", last):
        out[m.group(1).strip()] = m.group(2).strip()
    return out


def paste_infotext(params: dict):
    """The WebUI's paste of generation parameters onto the panel: for each ``(component, key or function)`` pair of
    ``ui.infotext_fields``, the value the key names (or the function returns) replaces the component's, converted
    to the component's type; a component whose key is absent keeps its value."""
    from dataclasses import fields

    from negguide_webui import settings as S
    from negguide_webui import ui

    kinds = {f.name: f.type for f in fields(S.NegGuideSettings)}
    values = S.NegGuideSettings().to_args()
    for name, key in ui.infotext_fields(list(S.ARG_NAMES)):  # the "components" are the arg names here
        raw = key(params) if callable(key) else params.get(key)
        if raw is not None:
            values[S.ARG_NAMES.index(name)] = float(raw) if kinds[name] in ("float", float) else str(raw).strip()
    return S.NegGuideSettings.from_args(*values)


def isclose(a, b):
    return math.isclose(a, b, rel_tol=1e-6)
