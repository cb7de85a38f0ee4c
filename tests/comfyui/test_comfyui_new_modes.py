"""The adaptive window and constant negative guidance nodes through the ComfyUI stand-in: adaptive with signal 'none'
is the Windowed node bit for bit (patch and guider, first- and second-order samplers), a signal's per-image starts
reach the trace and its summary, its measuring row costs only where an image is undecided; constant negative guidance
at lambda 0 is ComfyUI's CFG with the empty negative, bit for bit."""

import pytest
import torch
from standin_runs import EMPTY, POSITIVE, WINDOW, custom, guider, ksampler, model, noise, patch

ADAPTIVE = {"window_unit": "steps", "signal": "none", "threshold": 0.5}


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun"])
@pytest.mark.parametrize("window", [(2, 3), (1, 4), (6, 5)], ids=["partial", "every-step", "empty"])
def test_adaptive_without_a_signal_is_the_windowed_node_bit_for_bit(sampler, window):
    m = model()
    start, end = window
    windowed = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=start, window_end=end)[0]
    adaptive, trace = patch("NegGuideAdaptivePatch", m, **ADAPTIVE, window_start=start, window_end=end)
    assert torch.equal(ksampler(adaptive, sampler=sampler), ksampler(windowed, sampler=sampler))
    via_guider = custom(guider("NegGuideAdaptiveGuider", m, cfg=6.0, **ADAPTIVE, window_start=start,
                               window_end=end)[0], sampler)
    assert torch.equal(via_guider, ksampler(windowed, sampler=sampler))
    summary = trace.passes[0]
    assert summary.rows == 2 * summary.batch_size * summary.evaluations  # CFG's two rows, no measuring row


def test_adaptive_with_a_signal_records_per_image_starts_in_the_trace():
    m = model()
    values = {**ADAPTIVE, "signal": "alignment", "threshold": -1.0, "window_start": 2, "window_end": 4}
    adaptive, trace = patch("NegGuideAdaptivePatch", m, **values)
    ksampler(adaptive, x=noise(3))
    summary = trace.passes[0]
    acting = [r.get("negative_acting") for r in summary.records]
    # a patch runs through ComfyUI's own CFG: once every image has started, the steps are a fixed window's
    # (the plan's slots only, nothing to combine), recorded as negative_active for the whole batch
    assert acting == [None, [True] * 3, None, None]
    assert [r["negative_active"] for r in summary.records] == [False, True, True, True]
    assert "signal" in summary.records[1] and "negative started per image at step 2, 2, 2" in summary.describe()
    # the signal's row only at the first window step: everyone has started after it
    assert m.model.calls == [6, 9, 6, 6]


def test_an_adaptive_signal_that_never_fires_is_cfg_with_the_empty_prompt_and_says_so(caplog):
    m = model()
    values = {**ADAPTIVE, "signal": "alignment", "threshold": 1.0, "window_start": 1, "window_end": 4}
    adaptive, trace = patch("NegGuideAdaptivePatch", m, **values)
    with caplog.at_level("WARNING", logger="negguide"):
        out = ksampler(adaptive)
    torch.testing.assert_close(out, ksampler(m, POSITIVE, EMPTY), rtol=0, atol=1e-12)
    summary = trace.passes[0].describe()
    assert "started per image at step never, never" in summary and "never reached 1" in summary
    assert "never acted" in caplog.text


def test_constant_negative_at_zero_is_comfyui_cfg_with_the_empty_negative():
    m = model()
    zero = patch("NegGuideConstantNegativePatch", m, negative_scale=0.0)[0]
    assert torch.equal(ksampler(zero, sampler="euler_ancestral"), ksampler(m, POSITIVE, EMPTY, "euler_ancestral"))
    strong = patch("NegGuideConstantNegativePatch", m, negative_scale=2.0)[0]
    via_patch = ksampler(strong, sampler="euler_ancestral")
    assert not torch.equal(via_patch, ksampler(m, POSITIVE, EMPTY, "euler_ancestral"))
    via_guider = custom(guider("NegGuideConstantNegativeGuider", m, cfg=6.0, negative_scale=2.0)[0],
                        "euler_ancestral")
    assert torch.equal(via_guider, via_patch)
