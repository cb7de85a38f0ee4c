"""The toy's high-dimensional tracking figure: points at the summary's probe rows, panels clear of each other."""

import pytest

pytest.importorskip("matplotlib")

from negguide.toy import plots  # noqa: E402
from negguide.toy.study import tracker_table  # noqa: E402
from negguide.toy.tables import PROBE_ROWS  # noqa: E402

PANELS = [("anisotropic", 64), ("anisotropic", 256), ("isotropic", 64), ("isotropic", 256)]
PROBES_BY_SEED = {"flow-moment": (0.0, 0.0), "flow-hutchinson-1": (2.0, 2.0), "flow-hutchinson-2": (4.0, 4.0),
                  "flow-gated-1+evidence": (0.45, 0.75), "flow-exact+evidence": (0.0, 0.0)}


def _rows(panels) -> list[dict]:
    """``high_dimensional_tracking`` rows as summary.json holds them: one per panel, tracker and seed."""
    return [{"mixture": mixture, "dim": dim, "seed": seed, "sampler": "ddim", "steps": 20, "tracker": tracker,
             "stochastic_sampler": False, "extra_rows_per_image": 2 if "hutchinson" in tracker else 0,
             "average_probe_rows": probes[seed], "mean_abs_error_final": 0.01 + 0.02 * seed,
             "mean_abs_error_time": 0.01, "forbidden_found": 1.0, "false_alarms": 0.0}
            for mixture, dim in panels for tracker, probes in PROBES_BY_SEED.items() for seed in (0, 1)]


def _plotted_x(ax) -> dict[str, float]:
    """Each tracker's drawn x, read back from its errorbar's data line."""
    return {c.get_label(): float(c.lines[0].get_xdata()[0]) for c in ax.containers}


def test_each_point_sits_at_the_summarys_average_probe_rows():
    rows = _rows(PANELS)
    summary = {"high_dimensional_tracking": rows, "high_dimensional_tracking_by_tracker": tracker_table(rows)}
    expected = {r["tracker"]: r["average_probe_rows"] for r in summary["high_dimensional_tracking_by_tracker"]}
    assert expected["flow-moment"] == 0.0 and expected["flow-hutchinson-1"] == 2.0
    assert expected["flow-gated-1+evidence"] == pytest.approx(0.6)
    fig = plots.high_dimensional_figure(summary["high_dimensional_tracking"])
    try:
        for ax in fig.axes:
            assert _plotted_x(ax) == pytest.approx(expected)
            assert ax.get_xlabel() == PROBE_ROWS
    finally:
        plots._plt().close(fig)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_panels_and_legend_do_not_overlap(count):
    fig = plots.high_dimensional_figure(_rows(PANELS[:count]))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]  # ticks, labels and titles included
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert left.x1 < right.x0, (left, right)
        legend = fig.legends[0].get_window_extent(renderer)
        assert all(legend.y1 < box.y0 for box in boxes)
        assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1  # not clipped at the figure's edges
    finally:
        plots._plt().close(fig)
