"""The sampler-facing core (GuidanceRun) against the exact answers of the guidance rules and the mixtures."""

import math

import pytest
import torch
from schedule_stand_ins import sd_schedule, sigma_to_t

from negguide import guidance as G
from negguide.checks import SettingsError
from negguide.clock import EvaluationClock, ScheduleClock
from negguide.configs import DNGConfig, SLDConfig
from negguide.denoiser import GuidedDenoiser, evaluate_per_branch
from negguide.frames import Frame
from negguide.run import GuidanceRun, Rows
from negguide.samplers import SamplerInfo
from negguide.sld import SafeLatentDiffusion
from negguide.spec import GuidanceSpec
from negguide.toy import experiments as E
from negguide.toy.mixture import anisotropic_latent_like, latent_like, three_modes_2d
from negguide.toy.samplers import SAMPLERS
from negguide.windows import StepWindow

B = 3
STOCHASTIC, DETERMINISTIC = SamplerInfo(True), SamplerInfo(False)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def branch_preds(seed=1):
    p, n, e = (rand(B, 4, 2, 2, seed=seed + i) for i in range(3))
    return {"positive": p, "negative": n, "empty": e}


def evaluate(plan, preds, probe_seed=50):
    """Outputs for every group of a plan: the branch prediction, or a deterministic stand-in at probes."""
    out = {}
    for rows in plan.groups:
        full = preds[rows.branch] if rows.probe is None else rand(B, 4, 2, 2, seed=probe_seed + rows.probe)
        out[rows] = full if rows.images is None else full[list(rows.images)]
    return out


def one_step(spec, sampler=STOCHASTIC, steps=10, step=0, level=2.0, frame=None, preds=None):
    run = GuidanceRun(spec, B, frame or Frame.k_diffusion(), sampler, steps=steps)
    x = rand(B, 4, 2, 2, seed=9)
    plan = run.plan(x, level, step=step)
    preds = preds or branch_preds()
    return run, plan, preds, evaluate(plan, preds)


RULES = {
    "np": (GuidanceSpec("np", 6.0), lambda p, lam: G.cfg(p["negative"], p["positive"], 6.0)),
    "np3": (GuidanceSpec("np3", 6.0), lambda p, lam: G.negative_prompt_3term(p["empty"], p["positive"],
                                                                             p["negative"], 6.0)),
    "dns": (GuidanceSpec("dns", 6.0), lambda p, lam: G.cfg(p["positive"], p["empty"], 6.0)),
    "dns_s": (GuidanceSpec("dns", 6.0, dns_scale=2.0), lambda p, lam: G.diffusion_negative(p["empty"],
                                                                                         p["positive"], 2.0)),
    "dng": (GuidanceSpec("dng", 6.0), lambda p, lam: G.dng_text(p["empty"], p["positive"], p["negative"], 6.0, lam)),
    "perp_neg": (GuidanceSpec("perp_neg", 6.0, perp_neg_scale=1.5),
                 lambda p, lam: G.perp_neg(p["empty"], p["positive"], p["negative"], 6.0, 1.5)),
}


@pytest.mark.parametrize("name", list(RULES))
def test_every_mode_combines_to_its_rule(name):
    spec, rule = RULES[name]
    run, plan, preds, out = one_step(spec)
    guided = run.combine(plan, out)
    lam = run.mode.controller.current_lambda() if spec.mode == "dng" else None
    torch.testing.assert_close(guided, rule(preds, lam))


@pytest.mark.parametrize("name", list(RULES) + ["sld"])
def test_cfg_owning_backends_get_exactly_what_the_mode_adds(name):
    """cfg(uncond slot, cond slot) + correction == the combined rule, for every mode."""
    spec = GuidanceSpec("sld", 6.0) if name == "sld" else RULES[name][0]
    run, plan, preds, out = one_step(spec, sampler=DETERMINISTIC)
    backend_cfg = G.cfg(preds[plan.uncond_branch], preds[plan.cond_branch], spec.cfg_scale)
    if plan.needs_correction:
        corrected = backend_cfg + run.correction(plan, out)
    else:
        corrected = backend_cfg
    reference = GuidanceRun(spec, B, Frame.k_diffusion(), DETERMINISTIC, steps=10, generator=None)
    ref_plan = reference.plan(plan.x, 2.0, step=0)
    ref_out = evaluate(ref_plan, preds)
    torch.testing.assert_close(corrected, reference.combine(ref_plan, ref_out))


def test_slots_and_rows_of_each_mode():
    _, plan, _, _ = one_step(GuidanceSpec("dns"))
    assert (plan.cond_branch, plan.uncond_branch, plan.extra) == ("empty", "positive", ())
    _, plan, _, _ = one_step(GuidanceSpec("dng"), sampler=STOCHASTIC)
    assert (plan.cond_branch, plan.uncond_branch, plan.extra) == ("positive", "empty", (Rows("negative"),))
    _, plan, _, _ = one_step(GuidanceSpec("dng", dng=DNGConfig(tracker="flow-hutchinson")), sampler=DETERMINISTIC)
    assert plan.groups == (Rows("positive"), Rows("empty"), Rows("negative"), Rows("positive", 0),
                           Rows("negative", 0))
    assert plan.probe_inputs.shape == (1, B, 4, 2, 2)
    _, plan, _, _ = one_step(GuidanceSpec("dng", class_removal=True), sampler=STOCHASTIC)
    assert plan.groups == (Rows("positive"), Rows("negative"))  # no empty branch in class removal


def test_dng_at_lambda0_zero_is_plain_cfg_without_extra_rows():
    spec = GuidanceSpec("dng", 6.0, dng=DNGConfig(lambda0=0.0))
    for sampler in (STOCHASTIC, DETERMINISTIC):
        run, plan, preds, out = one_step(spec, sampler=sampler)
        assert plan.groups == (Rows("positive"), Rows("empty")) and not plan.needs_correction
        assert torch.equal(run.combine(plan, out), G.cfg(preds["empty"], preds["positive"], 6.0))
        assert run.tracker_name() is None


def test_windowed_np_uses_the_negative_only_inside_the_window():
    spec = GuidanceSpec("np", 5.0, window=StepWindow(3, 5))
    run = GuidanceRun(spec, B, Frame.k_diffusion(), DETERMINISTIC, steps=8)
    x, preds = rand(B, 4, 2, 2), branch_preds()
    used = []
    for _ in range(8):
        plan = run.plan(x, 1.0)
        used.append(plan.uncond_branch)
        expected = G.cfg(preds[plan.uncond_branch], preds["positive"], 5.0)
        assert torch.equal(run.combine(plan, evaluate(plan, preds)), expected)
        assert not plan.needs_correction
    assert used == ["empty"] * 2 + ["negative"] * 3 + ["empty"] * 3
    assert [r["negative_active"] for r in run.records] == [u == "negative" for u in used]


@pytest.mark.parametrize("window", [StepWindow(6, 5), StepWindow(20, 30), StepWindow.never()])
def test_an_empty_window_is_an_empty_negative_prompt(window):
    run = GuidanceRun(GuidanceSpec("np", 5.0, window=window), B, Frame.k_diffusion(), DETERMINISTIC, steps=8)
    assert all(run.plan(rand(B, 2), 1.0).uncond_branch == "empty" for _ in range(8))


def test_second_order_samplers_update_once_per_step_and_probe_only_at_its_start():
    clock = EvaluationClock(steps=4, evaluations=8)  # Heun: 7 evaluations, the last step evaluates once
    spec = GuidanceSpec("dng", dng=DNGConfig(tracker="flow-hutchinson"))  # a probe pair at every step's start
    run = GuidanceRun(spec, B, Frame.k_diffusion(), DETERMINISTIC, clock=clock)
    preds = branch_preds()
    steps, probes, lambdas = [], [], []
    for k in range(7):
        plan = run.plan(rand(B, 4, 2, 2, seed=k), 5.0 - 0.5 * k)
        steps.append((plan.step, plan.first))
        probes.append(plan.probe_inputs is not None)
        run.combine(plan, evaluate(plan, preds))
        lambdas.append(run.mode.controller.current_lambda().clone())
    assert steps == [(0, True), (0, False), (1, True), (1, False), (2, True), (2, False), (3, True)]
    assert probes == [first for _, first in steps]
    assert len(run.mode.controller.records) == 4
    for k in (1, 3, 5):  # the second evaluation reuses its step's lambda
        assert torch.equal(lambdas[k], lambdas[k - 1])


def test_schedule_clock_maps_levels_to_steps():
    clock = ScheduleClock.of([14.6, 5.0, 1.0, 0.3, 0.0])
    assert clock.steps == 4
    assert [clock.step_of(s) for s in (14.6, 9.0, 5.0, 1.0, 0.5, 0.3)] == [0, 0, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="decreasing"):
        ScheduleClock.of([1.0, 2.0])


def _three_frames(x0, eps, sigma, schedule):
    """The same state and predictions written in the VE, discrete-VP (eps and v) and flow parametrisations."""
    t = sigma_to_t(schedule, torch.tensor(sigma))
    abar = 1.0 / (1.0 + sigma**2)
    a_vp, b_vp = math.sqrt(abar), math.sqrt(1 - abar)
    a_f, b_f = 1 / (1 + sigma), sigma / (1 + sigma)  # flow time t_f with t_f / (1 - t_f) = sigma
    return {
        "ve-x0": (Frame.k_diffusion(), x0 + sigma * eps, sigma, lambda d, e: d),
        "ve-eps": (Frame.k_diffusion("eps"), x0 + sigma * eps, sigma, lambda d, e: e),
        "vp-eps": (Frame.discrete_vp(schedule.alphas_cumprod), a_vp * x0 + b_vp * eps, t, lambda d, e: e),
        "vp-v": (Frame.discrete_vp(schedule.alphas_cumprod, "v"), a_vp * x0 + b_vp * eps, t,
                 lambda d, e: a_vp * e - b_vp * d),
        "vp-sigma": (Frame.vp_at_sigma(), a_vp * x0 + b_vp * eps, sigma, lambda d, e: e),
        "flow": (Frame.rectified_flow(), a_f * x0 + b_f * eps, b_f, lambda d, e: e - d),
    }


@pytest.mark.parametrize("frame_name", ["ve-x0", "ve-eps", "vp-eps", "vp-v", "vp-sigma", "flow"])
def test_frames_convert_states_and_predictions_exactly(frame_name):
    schedule = sd_schedule()
    x0, eps = rand(B, 5, seed=1), rand(B, 5, seed=2)
    d_pred = rand(B, 5, seed=3)  # a model's denoised prediction; its eps is whatever goes with it at x
    sigma = 2.5
    frame, x, level, raw = _three_frames(x0, eps, sigma, schedule)[frame_name]
    noise = frame.noise_level(level, B)
    torch.testing.assert_close(noise.sigma, torch.full((B,), sigma, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(frame.to_ve(x, noise), x0 + sigma * eps, rtol=1e-6, atol=1e-9)
    consistent = (x - noise.a[:, None] * d_pred) / noise.b[:, None]  # the eps that goes with d_pred at x
    pred = raw(d_pred, consistent)
    torch.testing.assert_close(frame.denoised(pred, x, noise), d_pred)
    torch.testing.assert_close(frame.eps(pred, x, noise), consistent)
    torch.testing.assert_close(frame.from_eps(frame.eps(pred, x, noise), x, noise), pred)


@pytest.mark.parametrize("frame_name", ["ve-eps", "vp-eps", "vp-v", "flow"])
def test_dng_posterior_is_the_same_in_every_frame(frame_name):
    """The posterior is a property of the random variable: every parametrisation tracks the same p."""
    mix = latent_like(8)
    forget = mix.to_forget()
    schedule = sd_schedule()
    spec = GuidanceSpec("dng", 1.0, dng=DNGConfig(lambda0=1.0, prior=0.1, temperature=1.0, offset=0.0,
                                                   tracker="flow-moment"))
    runs = {}
    for name in ("ve-x0", frame_name):
        run = GuidanceRun(spec, 4, _three_frames(rand(4, 8), rand(4, 8), 1.0, schedule)[name][0], DETERMINISTIC,
                          steps=6)
        x_ve = rand(4, 8, seed=5) * 6
        for sigma in (5.0, 3.0, 2.0, 1.0, 0.6, 0.3):
            d_u, d_c = mix.denoise(x_ve, sigma), forget.denoise(x_ve, sigma)
            eps_u, eps_c = (x_ve - d_u) / sigma, (x_ve - d_c) / sigma
            frame, x, level, raw = _three_frames(d_u, eps_u, sigma, schedule)[name]
            plan = run.plan(x, level)
            preds = {"positive": raw(d_u, eps_u), "empty": raw(d_u, eps_u),
                     "negative": raw(d_c, eps_c)}
            run.combine(plan, {r: preds[r.branch] for r in plan.groups})
            x_ve = d_u + 0.8 * (x_ve - d_u)
        runs[name] = run.mode.controller.tracker.log_p
    torch.testing.assert_close(runs[frame_name], runs["ve-x0"], rtol=1e-5, atol=1e-8)


def test_flow_models_at_t_one_carry_no_evidence_and_give_no_nan():
    spec = GuidanceSpec("dng", 4.0, dng=DNGConfig(tracker="flow-hutchinson"))
    run = GuidanceRun(spec, B, Frame.rectified_flow(), DETERMINISTIC, steps=3)
    x, preds = rand(B, 4, 2, 2), branch_preds()
    plan = run.plan(x, 1.0)  # pure noise: no probes, no update, lambda stays at the prior's
    assert plan.probe_inputs is None
    out = run.combine(plan, evaluate(plan, preds))
    assert torch.isfinite(out).all() and run.mode.controller.records == []
    for t in (0.7, 0.3):
        plan = run.plan(x * (1 - t), t)
        assert torch.isfinite(run.combine(plan, evaluate(plan, preds))).all()
    assert len(run.mode.controller.records) == 2
    with pytest.raises(ValueError, match="rectified-flow"):
        GuidanceRun(GuidanceSpec("sld"), B, Frame.rectified_flow(), DETERMINISTIC, steps=3)


def test_dng_with_the_exact_posterior_through_the_run_is_cfg_toward_the_kept_modes():
    """The core's ground truth, now through plan/combine: DNG(lambda0, exact p) == CFG(w = lambda0) toward the
    remaining modes, at random states and noise levels."""
    mix = three_modes_2d()
    keep = mix.remembered()
    for sigma in (0.3, 1.0, 3.0):
        x = rand(500, 2, seed=int(sigma * 10)) * (2 + sigma)
        ok = mix.posterior_forbidden(x, sigma) <= 0.99
        model, run = E.guided_model(mix, "dng_exact", 3.0, 500, steps=1)
        guided = model(x, sigma, 0)
        ideal = G.cfg(mix.denoise(x, sigma), keep.denoise(x, sigma), 3.0)
        assert run.mode.controller.tracker.name == "exact"
        rel = (guided - ideal).norm(dim=1) / ideal.norm(dim=1).clamp(min=1e-12)
        assert float(rel[ok].max()) < 1e-6  # measured: ~1e-12 relative


def _ddpm_per_image_noise(model, x, sigmas, seeds):
    """Ancestral DDPM (beta variance) whose noise for image i comes from its own generator, as in the
    WebUIs: an image's trajectory does not depend on the rest of the batch."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, s, i)
        x = (s_next**2 / s**2) * x + (1 - s_next**2 / s**2) * denoised
        if s_next > 0:
            var = (s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2)
            x = x + math.sqrt(var) * torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype)
                                                  for g in gens])
    return x


@pytest.mark.parametrize("sampler, tracker", [("ddpm", "transition"), ("euler", "flow-moment"),
                                              ("dpmpp_2m", "flow-moment"), ("euler", "flow-hutchinson"),
                                              ("dpmpp_2m", "flow-gated")])
def test_dng_state_per_image_in_a_batch_equals_single_runs(sampler, tracker):
    mix = latent_like(16)
    forget = mix.to_forget()
    spec = GuidanceSpec("dng", 1.0, dng=DNGConfig(lambda0=2.0, prior=0.1, temperature=1.0, offset=0.0,
                                                   p_max=0.99, tracker=tracker), class_removal=True)
    sigmas = E.sigmas_for(sampler, 12)
    x0 = E.initial_state(mix, float(sigmas[0]), 3, torch.Generator().manual_seed(0))
    models = {"positive": mix.denoise, "negative": forget.denoise}

    def branch_model(x, sigma, layout):
        return evaluate_per_branch(x, sigma, layout, models)

    def sample(images):
        probes = [torch.Generator().manual_seed(500 + i) for i in images]  # one probe generator per image
        run = GuidanceRun(spec, len(images), Frame.k_diffusion(), SamplerInfo(sampler == "ddpm"), steps=12,
                          generator=probes)
        den = GuidedDenoiser(run, branch_model)
        if sampler == "ddpm":
            x = _ddpm_per_image_noise(den, x0[images], sigmas, [100 + i for i in images])
        else:
            x = SAMPLERS[sampler](den, x0[images], sigmas)
        run.finish(x)
        assert den.evaluations == 12
        return torch.tensor([r["p"] for r in run.mode.controller.records]), x

    p_batch, x_batch = sample([0, 1, 2])
    for i in range(3):
        p_single, x_single = sample([i])
        torch.testing.assert_close(p_batch[:, i], p_single[:, 0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x_batch[i], x_single[0], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(p_batch[:, 0], p_batch[:, 1])


def test_hutchinson_probes_are_one_batched_call_per_step():
    mix = latent_like(16)
    calls = []

    def branch_model(x, sigma, layout):
        calls.append(layout)
        return evaluate_per_branch(x, sigma, layout, {"positive": mix.denoise, "negative": mix.to_forget().denoise})

    spec = GuidanceSpec("dng", 1.0, dng=DNGConfig(tracker="flow-hutchinson", probe_pairs=2), class_removal=True)
    run = GuidanceRun(spec, 4, Frame.k_diffusion(), DETERMINISTIC, steps=5, generator=torch.Generator().manual_seed(0))
    sigmas = E.sigmas_for("euler", 5)
    x = SAMPLERS["euler"](GuidedDenoiser(run, branch_model), E.initial_state(mix, float(sigmas[0]), 4,
                                                                           torch.Generator().manual_seed(1)), sigmas)
    assert torch.isfinite(x).all() and len(calls) == 5
    # one call per step: 4 images x (positive, negative) at the state + 2 probe pairs x 2 branches x 4 images
    assert all(len(c) == 8 + 16 and {b for b, _ in c} == {"positive", "negative"} for c in calls)


def test_gated_probes_are_rows_for_the_probing_images_only_in_the_same_call():
    mix = anisotropic_latent_like(16, seed=3)
    calls, plans = [], []

    def branch_model(x, sigma, layout):
        calls.append(layout)
        return evaluate_per_branch(x, sigma, layout, {"positive": mix.denoise, "negative": mix.to_forget().denoise})

    spec = GuidanceSpec("dng", 1.0, dng=DNGConfig(lambda0=1.0, prior=0.1, temperature=1.0, offset=0.0, p_max=0.99,
                                                   tracker="flow-gated", probe_pairs=2), class_removal=True)
    run = GuidanceRun(spec, 6, Frame.k_diffusion(), DETERMINISTIC, steps=10,
                      generator=[torch.Generator().manual_seed(i) for i in range(6)])
    original_plan = run.plan

    def plan(*args, **kwargs):
        plans.append(original_plan(*args, **kwargs))
        return plans[-1]

    run.plan = plan
    sigmas = E.sigmas_for("ddim", 10)
    x = SAMPLERS["ddim"](GuidedDenoiser(run, branch_model), E.initial_state(mix, float(sigmas[0]), 6,
                                                                          torch.Generator().manual_seed(1)), sigmas)
    run.finish(x)
    assert torch.isfinite(x).all() and len(calls) == 10  # one batched call per step, probes included
    probing = [len(next((r.images or range(6)) for r in pl.extra if r.probe is not None)) if pl.probe_inputs is not None
               else 0 for pl in plans]
    assert [len(c) for c in calls] == [12 + 2 * 2 * n for n in probing]
    assert 0 < sum(probing) < 6 * 10 and len(set(probing)) > 1  # images probe on different steps
    rows = [r["probe_rows"] for r in run.records]
    assert rows == [4 * n for n in probing]
    assert run.average_extra_rows() == pytest.approx(1 + sum(rows) / 60)


def test_sld_momentum_moves_once_per_step_through_the_run():
    clock = EvaluationClock(steps=3, evaluations=6)
    spec = GuidanceSpec("sld", 5.0, sld=SLDConfig(), class_removal=True)
    run = GuidanceRun(spec, B, Frame.k_diffusion("eps"), DETERMINISTIC, clock=clock)
    reference = SafeLatentDiffusion(SLDConfig())
    x = rand(B, 8)
    for k in range(5):
        p = rand(B, 8, seed=k) * 0.02
        n = rand(B, 8, seed=10 + k) * 0.02
        plan = run.plan(x, 2.0)
        out = run.combine(plan, {Rows("positive"): p, Rows("negative"): n})
        torch.testing.assert_close(out, reference(p, p, n, 5.0, step=plan.step))


@pytest.mark.parametrize("mode", ["np", "np3", "dns", "dng", "sld", "perp_neg"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_no_nan_at_any_finite_input(mode, dtype):
    spec = GuidanceSpec(mode, 30.0, dng=DNGConfig(lambda0=1000.0, p_max=0.999), perp_neg_scale=50.0)
    for frame, level in ((Frame.k_diffusion(), 1e-3), (Frame.vp_at_sigma(), 80.0)):
        run = GuidanceRun(spec, B, frame, DETERMINISTIC, steps=2)
        for step in range(2):
            x = (rand(B, 4, 2, 2, seed=step) * 1e3).to(dtype)
            plan = run.plan(x, level)
            preds = {b: (t * 1e4).to(dtype) for b, t in branch_preds(seed=step).items()}
            out = {r: (preds[r.branch] if r.probe is None else -preds[r.branch])[list(r.images or range(B))]
                   for r in plan.groups}
            guided = run.combine(plan, out)
            assert guided.dtype == dtype and not torch.isnan(guided).any()


def test_sigma_windows_may_start_at_the_pure_noise_step():
    spec = GuidanceSpec("np", 5.0, window=StepWindow(math.inf, 0.5, "sigma"))
    run = GuidanceRun(spec, B, Frame.rectified_flow(), DETERMINISTIC, steps=3)
    assert [run.plan(rand(B, 2), t).negative_active for t in (1.0, 0.5, 0.2)] == [True, True, False]


@pytest.mark.parametrize("kwargs, needle", [
    (dict(mode="sharpen"), "mode must be one of"),
    (dict(mode="dng", window=StepWindow(1, 3)), "window applies"),
    (dict(mode="dns", class_removal=True), "needs a prompt"),
    (dict(cfg_scale=float("nan")), "CFG scale"),
    (dict(mode="dns", dns_scale=-1.0), "DNS scale"),
])
def test_spec_errors_are_clear(kwargs, needle):
    with pytest.raises(SettingsError, match=needle):
        GuidanceSpec(**kwargs)


def test_records_are_converted_on_read_only():
    run, plan, preds, out = one_step(GuidanceSpec("dng"), sampler=STOCHASTIC)
    run.combine(plan, out)
    rec = run.records
    assert rec[0]["step"] == 0 and isinstance(rec[0]["sigma"], float) and len(rec[0]["p"]) == B
    quiet = GuidanceRun(GuidanceSpec("dng"), B, Frame.k_diffusion(), STOCHASTIC, steps=3, record="none")
    plan = quiet.plan(rand(B, 4, 2, 2), 2.0)
    quiet.combine(plan, evaluate(plan, preds))
    assert quiet.records == [] and quiet.mode.controller.records == []


def test_modes_without_meaning_for_a_flow_model_are_refused_before_any_model_runs():
    from negguide.run import check_compatible

    with pytest.raises(SettingsError, match="SLD"):
        check_compatible(GuidanceSpec("sld"), Frame.rectified_flow())
    with pytest.raises(SettingsError, match="transition tracker"):  # a stochastic flow sampler
        check_compatible(GuidanceSpec("dng"), Frame.rectified_flow(), STOCHASTIC)
    check_compatible(GuidanceSpec("dng"), Frame.rectified_flow(), DETERMINISTIC)
    check_compatible(GuidanceSpec("dng", dng=DNGConfig(tracker="transition")), Frame.rectified_flow(), DETERMINISTIC)
    check_compatible(GuidanceSpec("dng", dng=DNGConfig(tracker="flow-moment")), Frame.rectified_flow(), STOCHASTIC)
