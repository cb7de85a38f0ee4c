"""The class-removal report's figures: the trade-off plot with 95% intervals, sample grids, posterior curves.

* ``tradeoff.png``: one column per sampler; rows: KL(uniform over the kept classes || generated classes), then per
  feature network the kept-class FID and KID, each against the forbidden share in percent. One line per method
  (NP, SLD, DNG per p_max, NP following DNG's lambda(t)) through its points sorted by scale, with error bars
  (95% paired bootstrap intervals of the share and of the metric); hollow markers: points with fewer samples than
  the sampler's decisive ones; unguided (star) and oracle (cross); dotted: the real-vs-real floor at the decisive
  sample count.
* ``grids_<sampler>.png``: samples 0..15 (common noise: the same start in every row) of the unguided model, the
  oracle and each line's point picked by the grid's matching rule; a red frame marks a sample the classifier puts
  in the removed class.
* ``posterior_curves.png``: per sampler, DNG's p(t) and lambda(t): individual samples ending in the removed class
  (red) and elsewhere (blue), the 10-90% band and median of each group over all samples, and the mean lambda(t)
  over all samples (what the np-schedule ablation applies).
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np

from train.removal.analysis import BASELINE_LABELS, KL_KEY, Line, PointStats, baseline, method_lines

MAX_PNG_BYTES = 500_000
DPI = 110
GRID_SAMPLES = 16
METHOD_COLORS = {"np": "#1f77b4", "sld": "#ff7f0e"}
DNG_COLORS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
SCHEDULE_COLORS = ("#7f7f7f", "#bcbd22", "#e377c2")
REMOVED_COLOR, KEPT_COLOR = "#d62728", "#1f77b4"


def metric_label(key: str) -> str:
    """``kl_uniform_kept`` -> "KL (uniform kept || generated)", ``kid_inception_balanced`` -> "KID x1e3
    Inception (balanced)"."""
    if key == KL_KEY:
        return "KL (uniform kept || generated)"
    kind, net, selection = key.split("_")
    name = "KID x1e3" if kind == "kid" else "FID"
    return f"{name} {net.capitalize()} ({'kept classes' if selection == 'kept' else selection})"


def display_scale(key: str) -> float:
    """KID is shown x 1000 (its values are ~1e-3..1e-1)."""
    return 1000.0 if key.startswith("kid_") else 1.0


def scale_name(method: str) -> str:
    return {"np": "lambda", "sld": "scale", "dng": "lambda0", "np-schedule": "lambda0 followed"}.get(method, "scale")


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------ figures
def save_png(fig, path: Path, dpi: int = DPI) -> None:
    """Save as RGB PNG under MAX_PNG_BYTES: a 256-colour palette when the full colour one is too large (sample
    grids of natural images), then halving the resolution as the last resort."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    image = Image.open(buf).convert("RGB")
    image.save(path, optimize=True)
    while path.stat().st_size > MAX_PNG_BYTES:
        image.quantize(colors=256).save(path, optimize=True)
        if path.stat().st_size <= MAX_PNG_BYTES:
            break
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)
        image.save(path, optimize=True)


def _spans_decades(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) > 10


def _share_axis(ax, percents: list[float]) -> None:
    """Forbidden share in percent; symlog (0 stays on the axis) when the nonzero shares span over a decade."""
    if _spans_decades(percents):
        smallest = min(v for v in percents if v > 0)
        ax.set_xscale("symlog", linthresh=10 ** math.floor(math.log10(smallest)), linscale=0.5)
        _plain_numbers(ax.xaxis)
    ax.set_xlabel("forbidden share (%)")


def _plain_numbers(axis) -> None:
    """Log-axis tick labels as plain numbers ("0.1", not "10^-1") at 1, 2 and 5 of each decade."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _pos) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        return f"{value:g}" if value == 0 or mantissa in (1, 2, 5) else ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(label))


def _line_style(line: Line, dng_order: list[float]) -> dict:
    if line.method == "dng":
        color = DNG_COLORS[dng_order.index(line.p_max) % len(DNG_COLORS)]
        return {"color": color, "marker": "o", "linestyle": "-"}
    if line.method == "np-schedule":
        color = SCHEDULE_COLORS[dng_order.index(line.p_max) % len(SCHEDULE_COLORS)]
        return {"color": color, "marker": "D", "linestyle": "--"}
    return {"color": METHOD_COLORS[line.method], "marker": "s" if line.method == "np" else "^", "linestyle": "-"}


def _annotated(points: list) -> list:
    """A few points whose scale is printed next to the marker: both ends and the middle."""
    return [points[i] for i in sorted({0, len(points) // 2, len(points) - 1})] if points else []


def _interval(stats: PointStats, key: str):
    return stats.kl if key == KL_KEY else stats.quality.get(key)


def _errors(interval, scale: float) -> tuple[float, list[list[float]] | None]:
    """(value, [[below], [above]]) for errorbar; no bar where the interval is unknown."""
    value = interval.value * scale
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return value, None
    return value, [[max(value - interval.low * scale, 0.0)], [max(interval.high * scale - value, 0.0)]]


def _plot_point(ax, stats: PointStats, key: str, scale: float, full: bool, style: dict, **kwargs) -> bool:
    interval = _interval(stats, key)
    if interval is None or not np.isfinite(interval.value):
        return False
    y, yerr = _errors(interval, scale)
    x, xerr = _errors(stats.share, 100.0)
    face = style["color"] if full else "white"
    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, marker=style["marker"], color=style["color"], mfc=face,
                markersize=kwargs.pop("markersize", 4), elinewidth=0.6, capsize=1.5, linestyle="none", **kwargs)
    return True


def _plot_tradeoff_panel(ax, points: list[dict], stats: dict[str, PointStats], key: str, dng_order: list[float],
                         decisive: int) -> None:
    scale = display_scale(key)
    for line, line_points in method_lines(points).items():
        style = _line_style(line, dng_order)
        shown = [r for r in line_points if _interval(stats[r["name"]], key) is not None]
        if not shown:
            continue
        xs = [100 * stats[r["name"]].share.value for r in shown]
        ys = [_interval(stats[r["name"]], key).value * scale for r in shown]
        ax.plot(xs, ys, color=style["color"], linestyle=style["linestyle"], lw=1.1, label=line.label)
        for r in shown:
            _plot_point(ax, stats[r["name"]], key, scale, stats[r["name"]].samples == decisive, style)
        for r, x, y in _annotated(list(zip(shown, xs, ys, strict=True))):
            ax.annotate(f"{r['scale']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        color=style["color"])
    for method, marker, size in (("none", "*", 11), ("oracle", "X", 8)):
        row = next((r for r in points if r["method"] == method), None)
        if row is not None:
            color = "black" if method == "none" else "dimgray"
            if _plot_point(ax, stats[row["name"]], key, scale, True, {"color": color, "marker": marker},
                           markersize=size):
                ax.plot([], [], marker=marker, color=color, linestyle="none", label=BASELINE_LABELS[method])
    floor = next((stats[r["name"]].floor.get(key) for r in points if stats[r["name"]].samples == decisive
                  and stats[r["name"]].floor.get(key) is not None), None)
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor * scale, color="gray", ls=":", lw=0.9, label=f"real vs real (n = {decisive})")
    _fit_decisive(ax, [stats[r["name"]] for r in points if stats[r["name"]].samples == decisive], key, scale,
                  floor)
    ax.set_ylabel(metric_label(key), fontsize=8)
    ax.grid(True, which="both", alpha=0.25)


def _fit_decisive(ax, decisive: list[PointStats], key: str, scale: float, floor: float | None) -> None:
    """The y axis spans the decisive points' intervals (and the floor): the strongest, non-decisive scales
    (FID ~200 at SLD 10 on MNIST) would otherwise flatten the region the verdicts are read in."""
    values = [floor * scale] if floor is not None and np.isfinite(floor) else []
    for stat in decisive:
        interval = _interval(stat, key)
        if interval is not None:
            values += [v * scale for v in (interval.value, interval.low, interval.high) if np.isfinite(v)]
    if values:
        low, high = min(min(values), 0.0), max(values)
        ax.set_ylim(low - 0.03 * (high - low), high + 0.08 * (high - low))


def tradeoff_figure(rows: list[dict], stats: dict[str, PointStats], samplers: dict[str, tuple[str, list[dict]]],
                    metrics: list[str], title: str, path: Path) -> None:
    """Paper Fig. 4 layout with intervals: metrics down, samplers across (``samplers``: name -> (title, rows))."""
    plt = _plt()
    dng_order = sorted({r["p_max"] for r in rows if r["method"] in ("dng", "np-schedule")
                        and r.get("p_max") is not None})
    fig, axes = plt.subplots(len(metrics), len(samplers), figsize=(5.2 * len(samplers), 2.8 * len(metrics) + 1.0),
                             squeeze=False, sharex="col", layout="constrained")
    for col, (sampler_title, points) in enumerate(samplers.values()):
        decisive = max(stats[r["name"]].samples for r in points)
        for row_index, key in enumerate(metrics):
            ax = axes[row_index, col]
            _plot_tradeoff_panel(ax, points, stats, key, dng_order, decisive)
            _share_axis(ax, [100 * stats[r["name"]].share.value for r in points])
            if row_index < len(metrics) - 1:
                ax.set_xlabel("")
        axes[0, col].set_title(sampler_title, fontsize=10)
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center",
               ncol=min(len(handles), 2 * len(samplers) + 1), fontsize=7)
    caption = (f"{title}: 95% paired bootstrap intervals. Numbers at markers: each method's scale; hollow: fewer "
               "samples than the decisive points; y axes fit the decisive points (stronger scales may lie above: "
               "intervals.csv has them all); lower is better on every metric")
    # wrapped to the figure's width (about 70 characters of 9 pt per 5.2-inch column)
    fig.suptitle("\n".join(textwrap.wrap(caption, 70 * len(samplers))), fontsize=9)
    save_png(fig, path)


def _mosaic(images: np.ndarray, labels: np.ndarray, removed: int, pad: int = 2) -> np.ndarray:
    """Images (N, C, H, W) uint8 side by side as one RGB strip, each in a frame: red if the classifier puts it
    in the removed class, white otherwise."""
    n, c, h, w = images.shape
    rgb = np.repeat(images, 3, axis=1) if c == 1 else images[:, :3]
    strip = np.full((h + 2 * pad, n * (w + 2 * pad), 3), 255, dtype=np.uint8)
    for i in range(n):
        x0 = i * (w + 2 * pad)
        if labels[i] == removed:
            strip[:, x0 : x0 + w + 2 * pad] = (220, 30, 30)
        strip[pad : pad + h, x0 + pad : x0 + pad + w] = rgb[i].transpose(1, 2, 0)
    return strip


def _grid_rows(points: list[dict], picks: dict[Line, dict]) -> list[tuple[str, dict]]:
    rows = [(BASELINE_LABELS[m], r) for m in BASELINE_LABELS if (r := baseline(points, m)) is not None]
    return rows + [(line.label, r) for line, r in picks.items()]


def _row_caption(label: str, row: dict) -> str:
    scale = "" if row["method"] in BASELINE_LABELS else f"\n{scale_name(row['method'])} {row['scale']:g}"
    return f"{label}{scale}\nforbidden {_pct(row['forbidden_share'])}"


def grid_figure(points: list[dict], title: str, target: float | None, picks: dict[Line, dict],
                points_dir_root: Path, removed: int, path: Path) -> None:
    """One row per method: samples 0..GRID_SAMPLES-1, pixel-exact (each image pixel is 2x2 on the PNG)."""
    from train.removal.sweep import load_point_tensors

    plt = _plt()
    strips, shown = [], 0
    for label, row in _grid_rows(points, picks):
        try:
            tensors = load_point_tensors(points_dir_root, row["name"])
        except FileNotFoundError:
            strips.append((label, row, None))
            continue
        count = min(GRID_SAMPLES, len(tensors["images"]))
        shown = max(shown, count)
        strips.append((label, row, _mosaic(tensors["images"][:count].numpy(), tensors["labels"][:count].numpy(),
                                           removed)))
    shape = next((s.shape for _, _, s in strips if s is not None), (32, 32 * GRID_SAMPLES, 3))
    zoom, caption_px, title_px, gap_px = 2, 170, 60, 8
    width_px, row_px = caption_px + shape[1] * zoom + 10, shape[0] * zoom
    height_px = title_px + len(strips) * (row_px + gap_px)
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI))
    for i, (label, row, strip) in enumerate(strips):
        bottom = height_px - title_px - (i + 1) * (row_px + gap_px) + gap_px / 2
        ax = fig.add_axes((caption_px / width_px, bottom / height_px, shape[1] * zoom / width_px,
                           row_px / height_px))
        ax.set_axis_off()
        if strip is None:
            ax.text(0.5, 0.5, f"samples of {row['name']} not found", ha="center", va="center", fontsize=8)
        else:
            ax.imshow(strip, interpolation="nearest", aspect="auto")
        ax.text(-0.01, 0.5, _row_caption(label, row), transform=ax.transAxes, ha="right", va="center", fontsize=7)
    rule = ("target forbidden share " + _pct(target) + " = smallest share every method reaches (>= 1%), each "
            "method at its closest point" if target is not None else "no guided points")
    fig.text(0.5, 1 - 8 / height_px, f"{title}: samples 0-{shown - 1} from the same noise in "
             f"every row; red frame: classified as removed class {removed}\n{rule}", ha="center", va="top",
             fontsize=7)
    save_png(fig, path)


def _band(ax, summary: dict, group: str, color: str) -> None:
    data = summary.get(group, {})
    if not data.get("samples"):
        return
    steps = np.asarray(summary["step"], dtype=float)
    quantiles = np.asarray(data["quantile_p"], dtype=float)  # [steps, 3]
    ax.fill_between(steps, quantiles[:, 0], quantiles[:, 2], color=color, alpha=0.15, lw=0)
    ax.plot(steps, quantiles[:, 1], color=color, lw=1.6, ls="-.")


def posterior_figure(picked: dict[str, tuple[str, dict]], removed: int, prior: float, path: Path) -> None:
    """Per sampler (columns): p(t) (top) and lambda(t) on a log axis (bottom) of the picked DNG point."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(picked), figsize=(5.0 * len(picked), 5.8), squeeze=False, sharex="col",
                             layout="constrained")
    for col, (title, row) in enumerate(picked.values()):
        curves = row["curves"]
        steps = np.asarray(curves["step"], dtype=float)
        p, lam = np.asarray(curves["p"], dtype=float), np.asarray(curves["lambda"], dtype=float)
        labels = np.asarray(curves.get("labels", [-1] * p.shape[1]))
        for i in sorted(range(p.shape[1]), key=lambda i: labels[i] == removed):  # removed class on top
            color = REMOVED_COLOR if labels[i] == removed else KEPT_COLOR
            axes[0, col].plot(steps, p[:, i], color=color, lw=0.8, alpha=0.8)
            axes[1, col].plot(steps, lam[:, i], color=color, lw=0.8, alpha=0.8)
        summary = row.get("posterior_by_label") or {}
        if summary:
            _band(axes[0, col], summary, "kept", KEPT_COLOR)
            _band(axes[0, col], summary, "removed", REMOVED_COLOR)
        table = row.get("lambda_schedule")
        if table:
            axes[1, col].plot(table["step"], table["mean_lambda"], color="black", lw=1.4, ls="--")
        p_max, lambda0 = row["p_max"], row["scale"]
        axes[0, col].axhline(p_max, color="gray", ls="--", lw=0.8)
        axes[0, col].axhline(prior, color="gray", ls=":", lw=0.8)
        axes[0, col].set_ylim(-0.02, 1.02)
        axes[0, col].set_ylabel("posterior p(removed class | x_t)", fontsize=8)
        groups = {g: (summary.get(g) or {}).get("samples", 0) for g in ("removed", "kept")}
        axes[0, col].set_title(f"{title}: DNG lambda0 {lambda0:g}, p_max {p_max:g}\nforbidden "
                               f"{_pct(row['forbidden_share'])}; bands over {groups['removed']} removed-class / "
                               f"{groups['kept']} kept samples", fontsize=8)
        axes[1, col].axhline(lambda0 * p_max / (1 - p_max), color="gray", ls="--", lw=0.8)
        axes[1, col].set_yscale("log", nonpositive="mask")
        _plain_numbers(axes[1, col].yaxis)
        axes[1, col].set_ylabel("guidance scale lambda(t)", fontsize=8)
        axes[1, col].set_xlabel("sampler step (0 = pure noise)")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.25)
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], color=REMOVED_COLOR, label=f"ends in removed class {removed}"),
              Line2D([], [], color=KEPT_COLOR, label="ends in a kept class"),
              Line2D([], [], color="black", ls="-.", label="group median (band: 10-90%)"),
              Line2D([], [], color="black", ls="--", label="mean lambda over all samples (np-schedule)"),
              Line2D([], [], color="gray", ls="--", label="p_max / lambda cap"),
              Line2D([], [], color="gray", ls=":", label=f"prior {prior:g}")]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=7)
    save_png(fig, path)
