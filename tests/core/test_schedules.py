import pytest
import torch

from negguide.schedules import DiscreteSchedule, ddpm_betas, evenly_spaced_sigmas, karras_sigmas


@pytest.mark.parametrize("kind, start, end", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012)])
def test_tables_match_diffusers(kind, start, end):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind, beta_start=start, beta_end=end)
    ours = DiscreteSchedule.from_kind(kind, 1000, start, end)
    torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_posterior_variance_and_sigma_relations():
    s = DiscreteSchedule.stable_diffusion()
    assert s.posterior_variance[0] == 0
    assert (s.posterior_variance[1:] < s.betas[1:]).all()
    torch.testing.assert_close(s.alpha_bar_at_sigma(s.sigmas), s.alphas_cumprod)
    t = torch.tensor([0.0, 10.5, 500.25, 999.0], dtype=torch.float64)
    torch.testing.assert_close(s.sigma_to_t(s.t_to_sigma(t)), t)


def test_sigma_lists():
    s = DiscreteSchedule.stable_diffusion()
    sig = evenly_spaced_sigmas(s, 20)
    assert sig.shape == (21,) and sig[-1] == 0 and (sig[:-1].diff() < 0).all()
    k = karras_sigmas(10, 0.03, 14.6)
    assert k[0] == pytest.approx(14.6) and k[-2] == pytest.approx(0.03) and k[-1] == 0


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        ddpm_betas("quadratic")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        DiscreteSchedule(torch.tensor([0.5, 1.5], dtype=torch.float64))
