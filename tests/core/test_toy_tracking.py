"""The 1-D posterior-tracking study and its table in docs/dng-tracking.md: found and false alarms for every tracker,
DDPM with both transition variances (the one it injects, beta, and the authors' code's beta_tilde)."""

import re

import pytest

from negguide.toy import experiments as E
from negguide.toy import tables
from negguide.toy.mixture import three_modes_1d
from negguide.toy.study import AUTO_DETERMINISTIC, TRACKING_1D, tracking_by_tracker, tracking_study

CELL = re.compile(r"^\d\.\d{3} / \d\.\d{3} \((\d+|-)% / \d+\.\d%\)$")


def _row(found, alarms):
    return {"mean_abs_error_final": 0.034, "mean_abs_error_time": 0.018, "forbidden_found": found,
            "false_alarms": alarms, "extra_rows_per_image": 0}


def _cells(table: str, sampler: str, steps: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {sampler} | {steps} |"))
    return [c.strip() for c in line.strip("|").split("|")][2:]


@pytest.fixture(scope="module")
def tiny_study():
    return tracking_by_tracker(tracking_study(n=20, seed=0))


def test_cell_shows_found_and_false_alarms():
    summary = {"posterior_tracking_by_tracker": {"ddpm": {"50": {
        "transition-beta_tilde": _row(0.94, 0.062), "transition-beta": _row(0.93, 0.004)}}}}
    own, beta_tilde, *rest = _cells(tables.one_dimensional(summary), "ddpm", "50")
    assert own == "0.034 / 0.018 (93% / 0.4%)"  # the sampler's own variance, whatever the dict order
    assert beta_tilde == "0.034 / 0.018 (94% / 6.2%)"
    assert rest == [""] * len(rest)


def test_ddpm_rows_carry_both_transition_variances(tiny_study):
    for steps in ("1000", "50", "20"):
        assert set(tiny_study["ddpm"][steps]) == {"transition-beta", "transition-beta_tilde"}


def test_every_tracker_cell_of_the_study_shows_found_and_false_alarms(tiny_study):
    table = tables.one_dimensional({"posterior_tracking_by_tracker": tiny_study})
    for sampler, steps in TRACKING_1D:
        cells = [c for c in _cells(table, sampler, str(steps)) if c]
        assert len(cells) == len(tiny_study[sampler][str(steps)])
        assert all(CELL.match(c) for c in cells), cells


def test_beta_tilde_on_ddpm_injecting_beta_raises_false_alarms():
    """Respaced DDPM, 50 steps: the mismatched variance flags kept-mode samples (measured at n = 300, seeds
    0-2: 6.5-8.6% against 0%; at 20k samples 6.2% against 0.0%)."""
    mix = three_modes_1d()
    alarms = {spec: E.track_posterior(mix, "ddpm", 50, spec, 300, seed=0)["false_alarms"]
              for spec in ("transition-beta", "transition-beta_tilde")}
    assert alarms["transition-beta"] <= 0.01
    assert alarms["transition-beta_tilde"] >= 0.03



def test_per_configuration_table_leaves_out_trackers_the_run_did_not_include():
    """The default-size toy run tracks fewer trackers than --full: the table has columns for the ones it ran."""
    row = {"mixture": "isotropic", "dim": 64, "sampler": "ddim", "steps": 20, "mean_abs_error_final": 0.01,
           "average_probe_rows": 0.5}
    table = tables.per_configuration({"high_dimensional_tracking": [{**row, "tracker": AUTO_DETERMINISTIC}]})
    header, _, line = table.splitlines()
    assert header.count("|") == 6 and line == "| isotropic | 64 | ddim | 20 | 0.010 (0.010), 0.50 rows |"
