"""The modes added as one file each: constant negative guidance (np_lambda) and the adaptive window. Their rows,
their rules on known branch predictions, and the adaptive window's invariants: signal 'none' is the fixed window
row for row, a signal that fires at once starts every image at the window's start, one that never fires is CFG."""

import pytest
import torch

from negguide import AdaptiveStart, GuidanceRun, GuidanceSpec, SamplerInfo, SettingsError, StepWindow
from negguide import guidance as G
from negguide.frames import Frame

B = 3
WINDOW = StepWindow(3, 6)  # steps 3-6 of 8 (1-based)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def preds_for(step, seed=0):
    """Branch predictions that differ per step and image (a deterministic stand-in denoiser)."""
    p, n, e = (rand(B, 4, 2, 2, seed=100 * step + seed + i) for i in range(3))
    return {"positive": p, "negative": n, "empty": e}


def drive(spec, steps=8, preds=preds_for):
    """Every step's guided output and plan through a k-diffusion frame (x fixed: the rules are what is tested)."""
    run = GuidanceRun(spec, B, Frame.k_diffusion(), SamplerInfo(False), steps=steps)
    x = rand(B, 4, 2, 2, seed=9)
    outs, plans = [], []
    for k in range(steps):
        plan = run.plan(x, 5.0 - 0.5 * k, step=k)
        p = preds(k)
        out = {rows: p[rows.branch] for rows in plan.groups}
        outs.append(run.combine(plan, out))
        plans.append(plan)
    return outs, plans, run


def test_constant_negative_is_dngs_rule_with_a_fixed_lambda():
    outs, plans, _ = drive(GuidanceSpec("np_lambda", 5.0, negative_scale=2.5))
    for k, (out, plan) in enumerate(zip(outs, plans, strict=True)):
        p = preds_for(k)
        assert {r.branch for r in plan.groups} == {"positive", "negative", "empty"}
        assert torch.equal(out, G.dng_text(p["empty"], p["positive"], p["negative"], 5.0, 2.5))
    with pytest.raises(SettingsError, match="negative scale"):
        GuidanceSpec("np_lambda", negative_scale=-1.0)


def test_constant_negative_correction_holds_for_a_cfg_owning_backend():
    run = GuidanceRun(GuidanceSpec("np_lambda", 5.0, negative_scale=2.0), B, Frame.k_diffusion(), SamplerInfo(False),
                      steps=4)
    plan = run.plan(rand(B, 4, 2, 2), 2.0, step=0)
    p = preds_for(0)
    preds = {rows: p[rows.branch] for rows in plan.groups}
    own = G.cfg(p[plan.uncond_branch], p[plan.cond_branch], 5.0)
    torch.testing.assert_close(own + run.correction(plan, preds), run.combine(plan, preds))


def test_adaptive_without_a_signal_is_the_fixed_window_row_for_row():
    fixed, fixed_plans, _ = drive(GuidanceSpec("np", 5.0, window=WINDOW))
    adaptive, plans, _ = drive(GuidanceSpec("adaptive", 5.0, window=WINDOW, adaptive=AdaptiveStart("none")))
    for a, b, pa, pb in zip(adaptive, fixed, plans, fixed_plans, strict=True):
        assert pa.groups == pb.groups and torch.equal(a, b)


def test_a_signal_that_fires_at_once_starts_every_image_at_the_window_start():
    fixed, _, _ = drive(GuidanceSpec("np", 5.0, window=WINDOW))
    adaptive, plans, run = drive(GuidanceSpec("adaptive", 5.0, window=WINDOW, adaptive=AdaptiveStart("alignment", -1)))
    for a, b in zip(adaptive, fixed, strict=True):
        assert torch.equal(a, b)
    rows = [len(p.groups) for p in plans]
    assert rows == [2, 2, 3, 2, 2, 2, 2, 2]  # the signal's extra row only at the first window step
    records = {r["step"]: r for r in run.records}
    assert records[2]["negative_acting"] == [True] * B and "signal" in records[2]


def test_a_signal_that_never_fires_is_cfg_at_three_rows_inside_the_window():
    outs, plans, run = drive(GuidanceSpec("adaptive", 5.0, window=WINDOW, adaptive=AdaptiveStart("alignment", 1.0)))
    for k, out in enumerate(outs):
        p = preds_for(k)
        assert torch.equal(out, G.cfg(p["empty"], p["positive"], 5.0))
    assert [len(p.groups) for p in plans] == [2, 2, 3, 3, 3, 3, 2, 2]


def test_images_start_on_their_own_signal():
    """Alignment cos(N - E, P - E): image 1's negative equals its prompt from step 3 on (cos 1), the others' are
    opposed (cos -1) until step 5: image 1 starts at step 3 (index 3), the rest at step 5 (index 4)."""
    def preds(k):
        p = preds_for(k)
        direction = p["positive"] - p["empty"]
        sign = torch.full((B,), -1.0, dtype=torch.float64)
        if k >= 3:
            sign[1] = 1.0
        if k >= 4:
            sign[:] = 1.0
        p["negative"] = p["empty"] + sign.view(B, 1, 1, 1) * direction
        return p

    outs, plans, run = drive(GuidanceSpec("adaptive", 5.0, window=WINDOW, adaptive=AdaptiveStart("alignment", 0.5)),
                             preds=preds)
    acting = {r["step"]: r["negative_acting"] for r in run.records if "negative_acting" in r}
    assert acting[2] == [False, False, False] and acting[3] == [False, True, False]
    assert acting[4] == [True, True, True] and acting[5] == [True, True, True]
    p3 = preds(3)
    torch.testing.assert_close(outs[3][1], G.cfg(p3["negative"], p3["positive"], 5.0)[1])
    torch.testing.assert_close(outs[3][0], G.cfg(p3["empty"], p3["positive"], 5.0)[0])
    assert len(plans[5].groups) == 2  # everyone started: a fixed window's rows


def test_gap_signal_fires_when_the_gap_falls_below_its_running_peak():
    def preds(k):
        p = preds_for(k)
        scale = [1.0, 3.0, 2.0, 0.5, 0.5, 0.5, 0.5, 0.5][k]
        p["negative"] = p["positive"] + scale * torch.ones_like(p["positive"])
        return p

    _, _, run = drive(GuidanceSpec("adaptive", 5.0, window=StepWindow(1, 8), adaptive=AdaptiveStart("gap", 0.4)),
                      preds=preds)
    acting = {r["step"]: r["negative_acting"] for r in run.records if "negative_acting" in r}
    signal = {r["step"]: r["signal"] for r in run.records if "signal" in r}
    # the gap lives in eps units, |eps_N - eps_P| = scale / sigma here (sigma = 5 - 0.5 k): 0.2, 0.667, 0.5, 0.143
    assert signal[1][0] == pytest.approx(1.0) and signal[2][0] == pytest.approx(0.5 / (3 / 4.5))
    assert acting[2] == [False] * B and acting[3] == [True] * B  # 0.143 / 0.667 <= 0.4 at step index 3


@pytest.mark.parametrize("bad, message", [
    (dict(signal="colour"), "adaptive signal must be one of"),
    (dict(signal="gap", threshold=0.0), "gap threshold"),
    (dict(signal="alignment", threshold=2.0), "cosine in"),
])
def test_adaptive_settings_are_checked(bad, message):
    with pytest.raises(SettingsError, match=message):
        AdaptiveStart(**bad)


def test_the_spec_round_trips_with_the_new_modes():
    for spec in (GuidanceSpec("np_lambda", 4.0, negative_scale=3.0),
                 GuidanceSpec("adaptive", 4.0, window=WINDOW, adaptive=AdaptiveStart("gap", 0.3))):
        assert GuidanceSpec.from_dict(spec.to_dict()) == spec


def test_negative_starts_read_each_images_start_from_the_records():
    """Per-image starts from a combining backend's records (negative_acting on every window step) and from a
    CFG-owning backend's, whose fixed-window steps hold only negative_active."""
    from negguide import negative_starts

    def preds(k):
        p = preds_for(k)
        sign = torch.tensor([1.0 if k >= 3 else -1.0, -1.0, -1.0], dtype=torch.float64)
        p["negative"] = p["empty"] + sign.view(B, 1, 1, 1) * (p["positive"] - p["empty"])
        return p

    _, _, run = drive(GuidanceSpec("adaptive", 5.0, window=WINDOW, adaptive=AdaptiveStart("alignment", 0.5)),
                      preds=preds)
    assert negative_starts(run.records, B) == [3, None, None]
    _, _, fixed = drive(GuidanceSpec("np", 5.0, window=WINDOW))
    assert negative_starts(fixed.records, B) == [2, 2, 2]
    cfg_owning = [{"step": 0, "negative_active": False}, {"step": 1, "negative_active": True,
                                                          "negative_acting": [False, True, False]},
                  {"step": 2, "negative_active": True}]
    assert negative_starts(cfg_owning, B) == [2, 1, 2]
