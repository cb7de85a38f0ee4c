"""The last-step diagnostic on tiny random UNets: one sub-step is the sampler's own trapezoid, exactly."""

import pytest
import torch
from removal_fixtures import tiny_model_dir

from negguide import DNGConfig
from train.removal.last_step import VEDenoisers, last_step_posteriors, main
from train.removal.models import load_study_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("last-step")
    return load_study_models(tiny_model_dir(root / "all", 1), tiny_model_dir(root / "only0", 2), None,
                             torch.device("cpu"))


def test_one_substep_is_the_samplers_trapezoid(models):
    torch.set_num_threads(1)
    one = last_step_posteriors(models, samples=4, lambda0=2.0, substeps=1, steps=6)
    assert torch.equal(one["one_step"], one["substeps"])
    many = last_step_posteriors(models, samples=4, lambda0=2.0, substeps=8, steps=6)
    assert torch.equal(many["one_step"], one["one_step"]) and torch.equal(many["before"], one["before"])
    assert ((many["substeps"] > 0) & (many["substeps"] <= 0.8 + 1e-12)).all()  # within the study's p_max


def test_ddims_coarse_last_step_gets_a_left_point_line_within_p_max(models):
    """DDIM-6's last step shrinks sigma seventyfold, past DNGConfig's min_step_ratio, so the left-point line is
    the rule DNG takes there (that the rule is finish()'s: tests/core/test_posterior.py); within the study's p_max."""
    torch.set_num_threads(1)
    out = last_step_posteriors(models, samples=4, lambda0=2.0, substeps=2, steps=6)
    sigma_start, sigma_end = out["sigma"]
    assert sigma_end < DNGConfig().min_step_ratio * sigma_start
    assert ((out["left_point"] > 0) & (out["left_point"] <= 0.8 + 1e-12)).all()


def test_timesteps_between_the_training_ones_interpolate_log_sigma(models):
    denoisers = VEDenoisers(models)
    assert denoisers.timestep(denoisers.sigma(20)) == pytest.approx(20.0, abs=1e-9)
    middle = (denoisers.sigma(20) * denoisers.sigma(21)) ** 0.5
    assert denoisers.timestep(middle) == pytest.approx(20.5, abs=1e-3)


def test_the_command_prints_the_three_posteriors(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("train.removal.last_step.load_study_models", lambda *a: models)
    assert main(["--models", str(tmp_path), "--samples", "2", "--substeps", "2"]) == 0
    out = capsys.readouterr().out
    assert "one trapezoid" in out and "2 sub-steps" in out and "second-to-last" in out and "left-point" in out
