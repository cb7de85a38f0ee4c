"""The class-removal sampler: schedules against diffusers, common random numbers, guidance through the core."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from removal_fixtures import tiny_model_dir

from negguide.schedules import DiscreteSchedule
from train.removal.models import load_study_models
from train.removal.noise import CHUNK, CommonNoise
from train.removal.points import Point, guidance_spec, sweep_points
from train.removal.presets import MNIST_CPU
from train.removal.sampler import BranchNetworks, SamplerSettings, _branch_segments, sample_batch, step_table

SCHEDULE = DiscreteSchedule.from_kind("linear", 1000, 1e-4, 0.02)


def _diffusers_scheduler(cls, **kw):
    """diffusers' scheduler with our float64 tables (its own are float32: the comparison is of the update rules)."""
    ref = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
              **kw)
    ref.betas, ref.alphas, ref.alphas_cumprod = SCHEDULE.betas, SCHEDULE.alphas, SCHEDULE.alphas_cumprod
    ref.one = ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


def test_ddim_step_table_equals_diffusers_ddim_at_every_timestep():
    table = step_table(SCHEDULE, SamplerSettings("ddim", 1000))
    ref = _diffusers_scheduler(DDIMScheduler, set_alpha_to_one=True, timestep_spacing="linspace")
    ref.set_timesteps(1000)
    assert [c.t for c in table] == ref.timesteps.tolist()
    x, eps = _state_and_eps()
    for coef in table:
        torch.testing.assert_close(coef.x_coef * x + coef.eps_coef * eps, ref.step(eps, coef.t, x, eta=0.0).prev_sample,
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("steps", [50, 7])
def test_respaced_ddim_steps_between_its_own_timesteps(steps):
    """x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps with abar_prev at the NEXT listed timestep
    (diffusers' DDIM steps to t - T // steps instead, which is not a listed timestep when T % steps != 0)."""
    table = step_table(SCHEDULE, SamplerSettings("ddim", steps))
    abar = SCHEDULE.alphas_cumprod
    x, eps = _state_and_eps()
    for i, coef in enumerate(table):
        a_t = abar[coef.t]
        a_prev = abar[table[i + 1].t] if i + 1 < len(table) else torch.tensor(1.0, dtype=torch.float64)
        x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        torch.testing.assert_close(coef.x_coef * x + coef.eps_coef * eps, a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt()
                                   * eps, rtol=1e-10, atol=1e-10)


def _state_and_eps():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))


@pytest.mark.parametrize("variance, variance_type", [("beta", "fixed_large"), ("beta_tilde", "fixed_small")])
@pytest.mark.parametrize("steps", [1000, 50])
def test_ddpm_step_table_equals_diffusers_ddpm(monkeypatch, variance, variance_type, steps):
    """Mean and injected noise of every (respaced) ancestral step equal diffusers' DDPMScheduler with the same z."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    table = step_table(SCHEDULE, SamplerSettings("ddpm", steps, variance))
    ref = _diffusers_scheduler(DDPMScheduler, variance_type=variance_type, timestep_spacing="linspace")
    ref.set_timesteps(steps)
    assert [c.t for c in table] == ref.timesteps.tolist()
    x, eps = _state_and_eps()
    z = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda *a, **k: z)
    for coef in table:
        ours = coef.x_coef * x + coef.eps_coef * eps + coef.noise_std * z
        theirs = ref.step(eps, coef.t, x).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    assert table[-1].noise_std == 0.0


def test_common_noise_is_a_function_of_sample_index_only():
    noise = CommonNoise(7, (1, 3, 3))
    whole = noise.step(range(0, 3 * CHUNK + 5), 4)
    for start, stop in [(0, 1), (5, 9), (CHUNK - 2, CHUNK + 3), (2 * CHUNK, 3 * CHUNK + 5)]:
        assert torch.equal(CommonNoise(7, (1, 3, 3)).step(range(start, stop), 4), whole[start:stop])
    assert not torch.equal(noise.step(range(0, 4), 5), whole[:4])  # another step: other numbers
    assert not torch.equal(noise.initial(range(0, 4)), whole[:4])
    assert not torch.equal(CommonNoise(8, (1, 3, 3)).step(range(0, 4), 4), whole[:4])  # another seed


def test_branch_segments_gather_each_branch():
    layout = (("positive", 0), ("positive", 1), ("negative", 0), ("negative", 1), ("positive", 1), ("negative", 1))
    assert _branch_segments(layout) == {"positive": [(0, 2), (4, 5)], "negative": [(2, 4), (5, 6)]}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return load_study_models(tiny_model_dir(root / "u", 1), tiny_model_dir(root / "f", 2), None, torch.device("cpu"))


def _sample(models, point, indices, preset=MNIST_CPU, record="none"):
    networks = BranchNetworks(models.unconditional, models.forget)
    sampler = SamplerSettings(point.sampler, point.steps, preset.sampler_variance)
    noise = CommonNoise(preset.seed, models.image_shape)
    return sample_batch(networks, models.schedule, guidance_spec(point, preset), sampler, indices, noise, record)[:3]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_common_random_numbers_across_methods_dng_off_is_unguided(models, sampler):
    """DNG at lambda0 = 0 evaluates the same unconditional rows: with common noise its samples ARE the unguided
    ones, bit for bit (so a difference between methods is the method's)."""
    unguided, _, rows = _sample(models, Point("none", 0.0, sampler, 6), range(0, 4))
    off, _, _ = _sample(models, Point("dng", 0.0, sampler, 6, 0.99), range(0, 4))
    assert torch.equal(unguided, off)
    assert rows == 4 * 6
    guided, run, rows = _sample(models, Point("dng", 5.0, sampler, 6, 0.99), range(0, 4))
    assert not torch.equal(guided, unguided) and torch.isfinite(guided).all()
    assert rows >= 2 * 4 * 6  # both networks on every step (plus probes on DDIM)
    assert run.tracker_name() == ("transition" if sampler == "ddpm" else "flow-gated")


@pytest.mark.parametrize("method, scale", [("np", 1.0), ("sld", 2.0), ("dng", 5.0), ("none", 0.0)])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_a_sample_does_not_depend_on_its_batch(models, method, scale, sampler):
    """Up to float rounding: the CPU kernels sum a batch of another size in another order (not bit for bit, even
    with oneDNN off), and guidance amplifies those ulps; a dependence on the batch would move samples by O(1)."""
    point = Point(method, scale, sampler, 5, 0.99 if method == "dng" else None)
    whole, _, _ = _sample(models, point, range(0, 6))
    for part in (range(0, 2), range(2, 6), range(3, 4)):
        alone, _, _ = _sample(models, point, part)
        torch.testing.assert_close(alone, whole[part.start : part.stop], rtol=5e-3, atol=5e-3)


def test_dng_records_p_and_lambda_per_image_and_step(models):
    """The per-image record gives p and lambda of every image at every step, p within (0, p_max]."""
    _, run, _ = _sample(models, Point("dng", 5.0, "ddpm", 6, 0.99), range(0, 3), record="per_image")
    records = [r for r in run.records if "p" in r]
    assert len(records) == 6 and all(len(r["p"]) == 3 and len(r["lambda"]) == 3 for r in records)
    assert all(0 < p <= 0.99 for r in records for p in r["p"])


def test_sweep_points_cover_methods_samplers_and_pmax():
    preset = dataclasses.replace(MNIST_CPU, np_scales=(0.5,), sld_scales=(1.0, 2.0), dng_lambda0=(5.0,),
                                 dng_p_max=(0.8, 0.99), schedule_lambda0=(), ddim_methods=("dng", "np-schedule"))
    names = [p.name for p in sweep_points(preset, with_oracle=True)]
    assert names == ["ddpm50-none-0", "ddpm50-oracle-0", "ddpm50-np-0.5", "ddpm50-sld-1", "ddpm50-sld-2",
                     "ddpm50-dng-5-pmax0.8", "ddpm50-dng-5-pmax0.99",
                     "ddim50-none-0", "ddim50-oracle-0", "ddim50-dng-5-pmax0.8", "ddim50-dng-5-pmax0.99",
                     "ddpm50-np-schedule-5-pmax0.8", "ddim50-np-schedule-5-pmax0.8"]  # the ablation last
    assert len(set(names)) == len(names)


def test_decisive_points_get_their_sample_count_and_the_ablation_follows_its_dng_point():
    from train.removal.points import point_samples, schedule_source

    points = {p.name: p for p in sweep_points(MNIST_CPU, with_oracle=True)}
    counts = {name: point_samples(p, MNIST_CPU) for name, p in points.items()}
    assert counts["ddpm50-none-0"] == counts["ddim50-oracle-0"] == 2048
    assert counts["ddpm50-np-0.25"] == counts["ddim50-sld-2"] == counts["ddpm50-dng-1-pmax0.8"] == 2048
    assert counts["ddpm50-np-4"] == counts["ddpm50-dng-1-pmax0.99"] == counts["ddim50-dng-10-pmax0.8"] == 512
    assert counts["ddim50-np-schedule-2-pmax0.8"] == 2048
    assert schedule_source(points["ddim50-np-schedule-2-pmax0.8"]).name == "ddim50-dng-2-pmax0.8"
    assert "ddim50-np-schedule-10-pmax0.8" not in points  # the preset follows lambda0 0.5-5 only


@pytest.mark.parametrize("overrides, message", [
    ({"methods": ("np", "np-schedule")}, "run dng wherever np-schedule runs"),
    ({"schedule_p_max": 0.5}, "--schedule-p-max 0.5 is not among --dng-p-max"),
    ({"schedule_lambda0": (3.0,)}, "--schedule-lambda0 values must be among --dng-lambda0"),
    ({"decisive_samples": 0}, "--decisive-samples must be >= 1"),
])
def test_ablation_settings_are_checked(overrides, message):
    from train.errors import UsageError

    with pytest.raises(UsageError, match=message):
        dataclasses.replace(MNIST_CPU, **overrides).validate()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_np_schedule_with_a_constant_table_is_np_bit_for_bit(models, sampler):
    """The ablation's per-step runs of the core: with lambda(k) = 0.7 at every step it IS NP at 0.7."""
    from train.removal.points import np_spec

    constant, _, rows = _sample_specs(models, sampler, [np_spec(0.7)] * 6)
    reference, _, reference_rows = _sample(models, Point("np", 0.7, sampler, 6), range(0, 4))
    assert torch.equal(constant, reference) and rows == reference_rows == 2 * 4 * 6
    varying, _, _ = _sample_specs(models, sampler, [np_spec(0.7)] * 5 + [np_spec(3.0)])
    assert not torch.equal(varying, reference)  # the last step's lambda is applied


def _sample_specs(models, sampler, specs):
    networks = BranchNetworks(models.unconditional, models.forget)
    settings = SamplerSettings(sampler, 6, MNIST_CPU.sampler_variance)
    return sample_batch(networks, models.schedule, specs, settings, range(0, 4),
                        CommonNoise(MNIST_CPU.seed, models.image_shape))


def test_per_step_specs_must_be_stateless_np_and_one_per_step(models):
    from train.removal.points import np_spec

    with pytest.raises(ValueError, match="per-step specs for a sampler of 6 steps"):
        _sample_specs(models, "ddpm", [np_spec(1.0)] * 5)
    sld = guidance_spec(Point("sld", 1.0, "ddpm", 6), MNIST_CPU)
    with pytest.raises(ValueError, match="stateless NP"):
        _sample_specs(models, "ddpm", [sld] * 6)


def test_dng_records_give_the_lambda_the_step_applied(models):
    """The per-image record of step k holds the lambda that guided step k: NP with those lambdas, image by image,
    reproduces DNG's samples (up to the batch's float rounding, see test_a_sample_does_not_depend_on_its_batch),
    while the same lambdas one step late do not: the mean over images is the schedule an ablation of the
    per-sample posterior must follow."""
    from train.removal.points import np_spec
    from train.removal.records import PosteriorRecords

    dng, run, _ = _sample(models, Point("dng", 5.0, "ddpm", 6, 0.99), range(0, 2), record="per_image")
    records = PosteriorRecords.from_batches([[r for r in run.records if "p" in r]])
    assert records.step == list(range(6)) and records.lam.shape == (6, 2)
    for i in range(2):
        networks = BranchNetworks(models.unconditional, models.forget)
        settings = SamplerSettings("ddpm", 6, MNIST_CPU.sampler_variance)
        noise = CommonNoise(MNIST_CPU.seed, models.image_shape)
        lambdas = [float(lam) for lam in records.lam[:, i]]
        alone, _, _ = sample_batch(networks, models.schedule, [np_spec(lam) for lam in lambdas], settings,
                                   range(i, i + 1), noise)
        late, _, _ = sample_batch(networks, models.schedule, [np_spec(lam) for lam in lambdas[:1] + lambdas[:-1]],
                                  settings, range(i, i + 1), noise)
        torch.testing.assert_close(alone[0], dng[i], rtol=5e-3, atol=5e-3)
        assert (late[0] - dng[i]).abs().max() > 20 * (alone[0] - dng[i]).abs().max()


def test_the_flow_trackers_step_rule_keys_ddim_dng_points_only():
    """A finished DDIM DNG point (and the np-schedule point that follows it) reruns under another
    dng_min_step_ratio; the DDPM points' transition tracker never reads it, so their keys stay."""
    from train.removal.points import point_settings, settings_key

    other = dataclasses.replace(MNIST_CPU, dng_min_step_ratio=0.0)
    models = {"unconditional": "u", "forget": "f"}
    for point in sweep_points(MNIST_CPU, with_oracle=False):
        changed = settings_key(point_settings(point, MNIST_CPU, models)) != settings_key(
            point_settings(point, other, models))
        assert changed == (point.sampler == "ddim" and point.method in ("dng", "np-schedule")), point.name
    spec = guidance_spec(Point("dng", 2.0, "ddim", 50, 0.8), MNIST_CPU)
    assert spec.dng.min_step_ratio == MNIST_CPU.dng_min_step_ratio
