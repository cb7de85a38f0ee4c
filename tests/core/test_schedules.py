import pytest
import torch
from schedule_stand_ins import evenly_spaced_sigmas, posterior_variance, sd_schedule, sigma_to_t, t_to_sigma

from negguide.schedules import DiscreteSchedule, ddpm_betas, karras_sigmas


@pytest.mark.parametrize("kind, start, end", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012)])
def test_tables_match_diffusers(kind, start, end):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind, beta_start=start, beta_end=end)
    ours = DiscreteSchedule.from_kind(kind, 1000, start, end)
    torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_posterior_variance_and_sigma_relations():
    s = sd_schedule()
    assert posterior_variance(s)[0] == 0
    assert (posterior_variance(s)[1:] < s.betas[1:]).all()
    torch.testing.assert_close(1.0 / (1.0 + s.sigmas**2), s.alphas_cumprod)
    t = torch.tensor([0.0, 10.5, 500.25, 999.0], dtype=torch.float64)
    torch.testing.assert_close(sigma_to_t(s, t_to_sigma(s, t)), t)


def test_sigma_lists():
    s = sd_schedule()
    sig = evenly_spaced_sigmas(s, 20)
    assert sig.shape == (21,) and sig[-1] == 0 and (sig[:-1].diff() < 0).all()
    k = karras_sigmas(10, 0.03, 14.6)
    assert k[0] == pytest.approx(14.6) and k[-2] == pytest.approx(0.03) and k[-1] == 0


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        ddpm_betas("quadratic")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        DiscreteSchedule(torch.tensor([0.5, 1.5], dtype=torch.float64))
