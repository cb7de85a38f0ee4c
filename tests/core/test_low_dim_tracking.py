"""The gated tracker in low dimension (negguide.probe_cycle): probes along coordinate axes, the low-dimensional
multi-mode study, and its table."""

import pytest
import torch

from negguide.configs import PosteriorConfig, ProbeGate
from negguide.posterior import FlowTracker
from negguide.probe_cycle import CYCLED_MAX_DIM, NEAR_FIELD, CycledDiagonal, branch_entries
from negguide.probe_gate import DECIDED, WHOLE_TRACE_FROM, GatedProbes
from negguide.toy import experiments as E
from negguide.toy import tables
from negguide.toy.low_dimensional import LOW_D_SEEDS, LOW_D_TUNING_SEEDS, low_dimensional_study
from negguide.toy.mixture import four_modes_2d, low_dimensional_like

AUTO = E.AUTO_DETERMINISTIC
AUTO_TRAPEZOID = AUTO + "+trapezoid"  # the probes' accuracy alone: no left-point rule on DDIM's coarse last step


@pytest.mark.parametrize("name, make, sampler", [
    ("four-mode 2-D", lambda seed: four_modes_2d(), "ddim"),
    ("four-mode 2-D", lambda seed: four_modes_2d(), "euler"),
    ("four-mode 2-D", lambda seed: four_modes_2d(), "dpmpp_2m"),
    ("random 1-D", lambda seed: low_dimensional_like(1, 4, 2, seed), "euler"),
    ("random 2-D", lambda seed: low_dimensional_like(2, 4, 2, seed), "ddim"),
    ("random 2-D", lambda seed: low_dimensional_like(2, 4, 2, seed), "euler"),
    ("random 2-D", lambda seed: low_dimensional_like(2, 4, 2, seed), "dpmpp_2m"),
])
def test_gated_tracker_meets_the_low_dimensional_targets(name, make, sampler):
    """20 steps, report seed 6 (never tuned on), 1500 trajectories: the targets of issue 20, item 7 (found >= 97%,
    end error <= 0.03, <= 1 probe row per image and step). Before the axis probes the gate found 67-88% on these
    configurations, end error 0.08-0.21; before the whole-trace gate the four-mode mixture ended at 0.033-0.038 on
    Euler and DPM++ 2M and DDIM spent 1.09 rows (docs/dng-tracking.md, 20k trajectories on each of seeds 6-9).
    The targets measure the probes, so every step takes the trapezoid here; what the default left-point rule on
    DDIM's coarse last step costs on these mixtures: the next test."""
    seed = LOW_D_SEEDS[0]
    r = E.track_posterior(make(seed), sampler, 20, AUTO_TRAPEZOID, 1500, seed=seed)
    assert r["forbidden_found"] >= 0.97, name
    assert r["mean_abs_error_final"] <= 0.03, name
    assert r["average_probe_rows"] <= 1.0, name


@pytest.mark.parametrize("name, make", [
    ("four-mode 2-D", lambda seed: four_modes_2d()), ("random 2-D", lambda seed: low_dimensional_like(2, 4, 2, seed)),
])
def test_the_left_point_rule_on_ddims_last_step_costs_little_on_exact_mixtures(name, make):
    """DDIM-20's last step (sigma 0.185 -> 0.010) shrinks sigma 18-fold; the default takes it with the left-point
    rule, which trained models need (docs/dng-tracking.md: the trapezoid sent 24-50% of 256 MNIST samples above
    p = 0.5 there). The exact mixtures' integrand is smooth there, so the trapezoid is better on them; measured
    (1500 trajectories, seed 6): end error 0.026 -> 0.030 (four-mode), 0.014 -> 0.017; false alarms 0.14% -> 1.2%,
    0.00% -> 0.71%. The bound catches a regression of the rule, not a target."""
    seed = LOW_D_SEEDS[0]
    trapezoid = E.track_posterior(make(seed), "ddim", 20, AUTO_TRAPEZOID, 1500, seed=seed)
    default = E.track_posterior(make(seed), "ddim", 20, AUTO, 1500, seed=seed)
    assert default["mean_abs_error_final"] != trapezoid["mean_abs_error_final"]  # the rule did act
    assert default["mean_abs_error_final"] <= trapezoid["mean_abs_error_final"] + 0.006, name
    assert default["forbidden_found"] >= 0.97 and default["false_alarms"] <= 0.02, name


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp_2m"])
def test_gated_tracker_on_the_random_3d_mixture(sampler):
    """Report seed 6, 20 steps: found and end error meet the targets (before: Euler 97.3%, 0.031 over seeds 6-9), but
    probing every axis at p >= 1/2 costs 3 pairs in 3-D: 0.95-1.05 rows over seeds 6-9, 0.99-1.03 on this seed. A
    bound that catches a regression, not the row target."""
    seed = LOW_D_SEEDS[0]
    r = E.track_posterior(low_dimensional_like(3, 6, 3, seed), sampler, 20, AUTO, 1500, seed=seed)
    assert r["forbidden_found"] >= 0.97
    assert r["mean_abs_error_final"] <= 0.03
    assert r["average_probe_rows"] <= 1.1


def test_report_seeds_are_not_tuning_seeds():
    assert not set(LOW_D_SEEDS) & set(LOW_D_TUNING_SEEDS)


def test_an_axis_probe_measures_each_branch_entry_and_the_diagonal_sums_them():
    """Linear branches ``D_ref = B x``, ``D_neg = A x`` with a large off-diagonal part (the 2-D case where one
    random-sign probe spreads several times the trace): each axis probe reads ``B_kk`` and ``A_kk`` exactly, and
    after both axes the diagonal holds the whole trace, with no spread."""
    a = torch.tensor([[0.3, 1.6], [1.6, -0.1]], dtype=torch.float64)
    b = torch.tensor([[0.5, -0.4], [-0.4, 0.2]], dtype=torch.float64)
    x = torch.tensor([[0.7, -1.1]], dtype=torch.float64)
    sigma, diagonal = torch.tensor([2.0], dtype=torch.float64), CycledDiagonal(1, 2, torch.device("cpu"), 1.0)
    for axis in range(2):
        v = diagonal.directions([0], (2,))
        assert v[0, 0].tolist() == [1.0 * (axis == 0), 1.0 * (axis == 1)]  # a never-measured axis first
        points = x + 0.01 * sigma * v
        entries = branch_entries((v, points @ b.T, points @ a.T), x @ b.T, x @ (a - b).T, 0.01 * sigma)
        torch.testing.assert_close(entries[:, 0], torch.stack([b[axis, axis], a[axis, axis]]))
        diagonal.store([0], sigma, entries[1] - entries[0], entries)
    torch.testing.assert_close(diagonal.trace(sigma), (a - b).trace().reshape(1))
    assert not diagonal.stale(sigma).any()


def test_an_image_listed_again_probes_its_next_oldest_axis():
    """The whole-trace gate lists an image once per axis: each listing takes a different axis, oldest first."""
    diagonal = CycledDiagonal(2, 3, torch.device("cpu"), 1.0)
    sigma = torch.tensor([4.0, 4.0], dtype=torch.float64)
    v = diagonal.directions([0], (3,))  # image 0 measures axis 0 at sigma 4 ...
    diagonal.store([0], sigma[:1], torch.ones(1, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64) * 0.5)
    v = diagonal.directions([1, 0, 0, 1], (3,))  # ... then: image 1 twice (never measured), image 0 twice
    assert v[0].argmax(1).tolist() == [0, 1, 2, 1]


def test_the_whole_trace_gate_lists_images_from_half_on_once_per_axis():
    """2-D: undecided images inside DECIDED whose entries are stale probe, those at p >= 1/2 along every axis; an
    image past DECIDED or with fresh entries does not."""
    gate = GatedProbes(ProbeGate(), 4, torch.device("cpu"), prior=0.5)
    p = torch.tensor([0.3, WHOLE_TRACE_FROM + 0.1, DECIDED[1] + 0.05, DECIDED[0] - 0.05], dtype=torch.float64)
    sigma = torch.full((4,), 2.0, dtype=torch.float64)
    assert sorted(gate.probing(p.log(), 0, sigma, 2).tolist()) == [0, 1, 1]
    diagonal = gate.diagonal
    diagonal.directions([0, 1], (2,))
    diagonal.store([0, 1], sigma[:2], torch.zeros(2, dtype=torch.float64), torch.full((2, 2), 0.5, dtype=torch.float64))
    diagonal.directions([0, 1], (2,))
    diagonal.store([0, 1], sigma[:2], torch.zeros(2, dtype=torch.float64), torch.full((2, 2), 0.5, dtype=torch.float64))
    assert gate.probing(p.log(), 1, sigma * 0.9, 2).tolist() == []  # fresh: nothing to measure


def test_a_near_field_entry_is_carried_on_the_sigma_squared_law_without_reprobing():
    """Both branches' entries in [NEAR_FIELD, 1] (sigma^2 << the variance along the axis): the within-class entry
    goes as sigma^2 and stays fresh however long it is held; a far-from-1 entry ages as before."""
    sigma = torch.tensor([0.2], dtype=torch.float64)
    for near, entries in ((True, [NEAR_FIELD + 0.05, 0.95]), (False, [0.5, 0.6])):
        diagonal = CycledDiagonal(1, 1, torch.device("cpu"), 0.5, near_field=True)
        diagonal.directions([0], (1,))
        diagonal.store([0], sigma, torch.tensor([0.3], dtype=torch.float64),
                       torch.tensor(entries, dtype=torch.float64).reshape(2, 1))
        later = sigma / 10
        assert bool(diagonal.stale(later)) != near
        if near:
            torch.testing.assert_close(diagonal.trace(later), torch.tensor([0.3 / 100], dtype=torch.float64))


def test_low_dimensional_probes_of_an_image_in_a_batch_equal_its_single_run():
    """The axis an image probes and the entries it keeps are its own: a batch changes nothing."""
    mix = four_modes_2d()
    cfg = PosteriorConfig(prior=mix.prior_forbidden, p_min=1e-12, p_max=1 - 1e-9)
    sigmas = E.sigmas_for("euler", 12)
    x0 = E.initial_state(mix, float(sigmas[0]), 3, torch.Generator().manual_seed(4))
    forget = mix.to_forget()

    def run(images):
        tracker = FlowTracker(cfg, len(images), divergence="gated", directions="deflated", start="evidence",
                              generator=[torch.Generator().manual_seed(10 + i) for i in images])
        x = x0[images]
        for step in range(len(sigmas) - 1):
            s, s_next = float(sigmas[step]), float(sigmas[step + 1])
            request, at = tracker.probe_points(x, s, step), None
            if request is not None:
                flat = request.points.reshape(-1, 2)
                at = (request.directions, mix.denoise(flat, s).reshape(request.points.shape),
                      forget.denoise(flat, s).reshape(request.points.shape))
            tracker.observe(x, s, mix.denoise(x, s), forget.denoise(x, s), probe_predictions=at)
            x = x + (s_next - s) * (x - mix.denoise(x, s)) / s
        tracker.finish(x)
        assert tracker.gate.diagonal is not None and 2 <= CYCLED_MAX_DIM
        return tracker

    batch = run([0, 1, 2])
    assert 0 < batch.average_probe_rows() < 2
    for i in range(3):
        torch.testing.assert_close(batch.log_p[i:i + 1], run([i]).log_p, rtol=1e-9, atol=1e-9)


def test_the_low_dimensional_table_gives_found_with_its_interval():
    rows = low_dimensional_study(40, seeds=(LOW_D_SEEDS[0],), steps_list=(10,), trackers=(AUTO,))
    assert {r["mixture"] for r in rows} >= {"four-mode 2-D", "random 2-D, 4 modes", "random 3-D, 6 modes"}
    table = tables.low_dimensional({"low_dimensional_tracking": rows}, trackers=(AUTO,))
    assert table.count("\n") == 1 + len(rows)
    low, high = tables.wilson(97, 100)
    assert 0.91 < low < 0.97 < high < 0.995
    assert tables.wilson(0, 0) != tables.wilson(0, 0)  # nan: no forbidden sample, no interval
