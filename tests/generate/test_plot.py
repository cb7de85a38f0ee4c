"""The lambda(t) / p(t) plot."""

from __future__ import annotations

import pytest
from generate_helpers import NEGATIVE, PROMPT, SIZE, gen, wrap

from negguide.generate import plot_guidance

pytest.importorskip("matplotlib")


def test_plot_has_p_and_lambda_per_image(sd_pipe):
    out = wrap(sd_pipe, "euler_a")(PROMPT, NEGATIVE, mode="dng", num_inference_steps=4, generator=gen(0, 3),
                                   num_images_per_prompt=3, output_type="latent", **SIZE)
    fig = out.plot(title="t", labels=["a", "b", "c"])
    ax_p, ax_l = fig.axes
    assert len(ax_p.lines) == len(ax_l.lines) == 3
    assert list(ax_l.lines[1].get_ydata()) == pytest.approx(out.lambdas[:, 1].tolist())
    assert list(ax_p.lines[2].get_xdata()) == [1, 2, 3, 4]
    fig = plot_guidance(out.records, x_axis="sigma")
    assert list(fig.axes[0].lines[0].get_xdata()) == pytest.approx([r["sigma"] for r in out.records])
    from negguide.generate.plot import figure_to_image

    assert figure_to_image(fig).size[0] > 100


def test_plot_refuses_records_without_a_posterior(sd_pipe):
    out = wrap(sd_pipe)(PROMPT, NEGATIVE, num_inference_steps=2, generator=gen(0), output_type="latent", **SIZE)
    with pytest.raises(ValueError, match="no DNG posterior"):
        out.plot()
