"""The class-removal study's report: the trade-off figure of the DNG paper (Fig. 4 / App. G Fig. 14), sample grids
at a matched forbidden share, DNG's posterior curves, and a Markdown summary with the best point of every method
at forbidden share <= 1% and <= 5%.

``write_report(rows, preset, points_dir_root, report_dir)`` writes into ``report_dir``:

* ``tradeoff.png``: one column per sampler; top row KL(uniform over the kept classes || generated classes), then
  the kept-class FID of every FID network that ran (Inception first), each against the forbidden share in percent.
  One line per method (NP, SLD, DNG per p_max) through its points sorted by scale; unguided (star) and oracle
  (cross) as single markers.
* ``grids_<sampler>.png``: samples 0..15 (common noise: the same start in every row) of the unguided model, the
  oracle and each method's point picked by the matching rule of :func:`grid_picks`; a red frame marks a sample
  the classifier puts in the removed class.
* ``posterior_curves.png``: p(t) and lambda(t) of the curve samples of the DNG point picked for each sampler's grid.
* ``summary.md``: Markdown tables (baselines, best per method at each threshold, every point) and verdicts.

The returned dict holds the same numbers (see :func:`write_report`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.removal.presets import FID_NETWORKS, SAMPLERS, RemovalPreset

GUIDED_METHODS = ("np", "sld", "dng")
BASELINE_LABELS = {"none": "unguided", "oracle": "oracle"}
THRESHOLDS = (0.01, 0.05)  # forbidden share: the paper's high-safety regime and a looser one
GRID_MIN_TARGET = 0.01  # the grid's matched share is never below 1% (a 0% target is a guess on few samples)
GRID_SAMPLES = 16
KL_KEY = "kl_uniform_kept"
MAX_PNG_BYTES = 500_000
DPI = 110
SHARE_TOLERANCE = 1e-12  # shares are count / samples: 5/500 must count as <= 1%
METHOD_COLORS = {"np": "#1f77b4", "sld": "#ff7f0e"}
DNG_COLORS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
METRIC_LABELS = {
    KL_KEY: "KL (uniform kept || generated)",
    "fid_inception_kept": "FID Inception (kept classes)",
    "fid_classifier_kept": "FID classifier (kept classes)",
}


# ------------------------------------------------------------------------------------------ grouping the rows
@dataclass(frozen=True)
class Line:
    """One curve of the trade-off figure: a guided method, and for DNG one p_max."""

    method: str
    p_max: float | None = None

    @property
    def label(self) -> str:
        if self.method == "dng":
            return f"DNG (p_max {self.p_max:g})"
        return self.method.upper()


def scale_name(method: str) -> str:
    return {"np": "lambda", "sld": "scale", "dng": "lambda0"}.get(method, "scale")


def samplers_present(rows: list[dict]) -> list[str]:
    found = {r["sampler"] for r in rows}
    return [s for s in SAMPLERS if s in found] + sorted(found - set(SAMPLERS))


def sampler_rows(rows: list[dict], sampler: str) -> list[dict]:
    return [r for r in rows if r["sampler"] == sampler]


def method_lines(rows: list[dict]) -> dict[Line, list[dict]]:
    """The guided points of one sampler by line (NP, SLD, DNG per p_max in ascending order), sorted by scale."""
    lines: dict[Line, list[dict]] = {}
    for method in GUIDED_METHODS:
        points = [r for r in rows if r["method"] == method]
        p_maxes = sorted({r.get("p_max") for r in points}, key=lambda p: -1.0 if p is None else p)
        for p_max in p_maxes:
            line = Line(method, p_max if method == "dng" else None)
            lines[line] = sorted((r for r in points if r.get("p_max") == p_max), key=lambda r: r["scale"])
    return lines


def baseline(rows: list[dict], method: str) -> dict | None:
    return next((r for r in rows if r["method"] == method), None)


def sampler_title(rows: list[dict], sampler: str, brackets: bool = True) -> str:
    steps = ", ".join(map(str, sorted({r["steps"] for r in sampler_rows(rows, sampler)})))
    return f"{sampler.upper()} ({steps} steps)" if brackets else f"{sampler.upper()}, {steps} steps"


def fid_keys(preset: RemovalPreset, rows: list[dict]) -> list[str]:
    """The kept-class FID columns that ran, Inception first (the paper's metric), then the classifier's."""
    ran = [n for n in FID_NETWORKS if n in preset.fid_networks]
    return [f"fid_{n}_kept" for n in ran if any(r.get(f"fid_{n}_kept") is not None for r in rows)]


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def _value(row: dict, key: str) -> float | None:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# ------------------------------------------------------------------------------------------ numbers
def best_at_threshold(points: list[dict], key: str, threshold: float) -> dict | None:
    """The point with the lowest ``key`` among those with forbidden share <= threshold (ties: the lower share,
    then the lower scale); None when no point qualifies."""
    qualifying = [r for r in points if r["forbidden_share"] <= threshold + SHARE_TOLERANCE
                  and _value(r, key) is not None]
    if not qualifying:
        return None
    best = min(qualifying, key=lambda r: (_value(r, key), r["forbidden_share"], r["scale"]))
    return {"value": _value(best, key), "scale": best["scale"], "forbidden_share": best["forbidden_share"],
            "name": best["name"]}


def grid_target(lines: dict[Line, list[dict]]) -> float | None:
    """The smallest forbidden share that every line reaches (the largest of the lines' minima), at least 1%."""
    minima = [min(r["forbidden_share"] for r in points) for points in lines.values() if points]
    return max(max(minima), GRID_MIN_TARGET) if minima else None


def grid_picks(lines: dict[Line, list[dict]]) -> tuple[float | None, dict[Line, dict]]:
    """The matching rule of the grids: target = the smallest forbidden share every line reaches (the largest of
    the lines' lowest shares), raised to 1% if below; each line contributes its point whose share is closest to
    the target (ties: the lower share, then the lower scale, i.e. the less invasive setting)."""
    target = grid_target(lines)
    if target is None:
        return None, {}
    picks = {line: min(points, key=lambda r: (abs(r["forbidden_share"] - target), r["forbidden_share"], r["scale"]))
             for line, points in lines.items() if points}
    return target, picks


def curve_pick(target: float | None, picks: dict[Line, dict]) -> dict | None:
    """The DNG point of the posterior figure: among the grid's DNG picks with curves, the one closest to the
    target (ties: the higher p_max, the study's default 0.99)."""
    dng = [(line, r) for line, r in picks.items() if line.method == "dng" and r.get("curves")]
    if not dng:
        return None
    return min(dng, key=lambda lr: (abs(lr[1]["forbidden_share"] - target), -(lr[0].p_max or 0.0)))[1]


def _format(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if key == KL_KEY else f"{value:.2f}"


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def verdict(sampler_label: str, threshold: float, key: str, best: dict[str, dict | None],
            baselines: dict[str, dict | None]) -> str:
    """One sentence comparing the lines' best ``key`` at ``threshold``, computed from the numbers only."""
    head = f"At forbidden share <= {100 * threshold:g}% ({sampler_label}), {metric_label(key)}: "
    reached = sorted(((label, b) for label, b in best.items() if b is not None), key=lambda lb: lb[1]["value"])
    missing = [label for label, b in best.items() if b is None]
    if not reached:
        body = "no method reaches it"
    else:
        body = " vs ".join(f"{label} {_format(key, b['value'])}" for label, b in reached)
        shown = _format(key, reached[0][1]["value"])  # equal as printed: a tie, not a win by rounding noise
        lowest = [label for label, b in reached if _format(key, b["value"]) == shown]
        if len(reached) == 1:
            body += f": {reached[0][0]} is the only method that reaches it"
        elif len(lowest) > 1:
            body += f": {' and '.join(lowest)} tie"
        else:
            body += f": {lowest[0]} best"
    if missing and reached:
        body += f"; no point of {', '.join(missing)} qualifies"
    oracle = baselines.get("oracle")
    if oracle is not None and _value(oracle, key) is not None:
        body += f" (oracle {_format(key, _value(oracle, key))})"
    return head + body + "."


def sampler_summary(rows: list[dict], sampler: str, metrics: list[str]) -> dict:
    points = sampler_rows(rows, sampler)
    lines = method_lines(points)
    baselines = {m: baseline(points, m) for m in BASELINE_LABELS}
    best, verdicts = {}, {}
    for threshold in THRESHOLDS:
        best[threshold] = {line.label: {key: best_at_threshold(pts, key, threshold) for key in metrics}
                           for line, pts in lines.items()}
        verdicts[threshold] = [
            verdict(sampler_title(rows, sampler, brackets=False), threshold, key,
                    {label: per_key[key] for label, per_key in best[threshold].items()}, baselines)
            for key in metrics]
    target, picks = grid_picks(lines)
    return {
        "title": sampler_title(rows, sampler),
        "baselines": {m: (None if r is None else _point_numbers(r, metrics)) for m, r in baselines.items()},
        "best": best,
        "verdicts": verdicts,
        "grid": {"target": target, "points": {line.label: r["name"] for line, r in picks.items()}},
    }


def _point_numbers(row: dict, metrics: list[str]) -> dict:
    return {"name": row["name"], "forbidden_share": row["forbidden_share"], **{k: _value(row, k) for k in metrics}}


# ------------------------------------------------------------------------------------------ markdown
def _table(header: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # "||" of the KL label

    return [line(header), "|" + "---|" * len(header)] + [line(r) for r in body]


def summary_markdown(preset: RemovalPreset, rows: list[dict], summary: dict, metrics: list[str]) -> str:
    out = [f"# Class removal: {preset.dataset}, class {preset.removed} removed (preset `{preset.name}`)", "",
           "Forbidden share: the classifier's share of samples in the removed class. KL: KL(uniform over the kept "
           "classes || generated class histogram). FID against the training set without the removed class. "
           "Best: lowest value among a method's points at or below the forbidden-share threshold (scale: NP "
           "lambda, SLD guidance scale, DNG lambda0).", "",
           "Figures: `tradeoff.png`, `grids_<sampler>.png`, `posterior_curves.png`.", ""]
    for sampler, s in summary["samplers"].items():
        out += [f"## {s['title']}", "", "Baselines:", ""]
        out += _table(["point", "forbidden share"] + [metric_label(k) for k in metrics],
                      [[BASELINE_LABELS[m], _pct(b["forbidden_share"])] + [_format(k, b[k]) for k in metrics]
                       for m, b in s["baselines"].items() if b is not None])
        for threshold in THRESHOLDS:
            out += ["", f"Best at forbidden share <= {100 * threshold:g}%:", ""]
            out += _table(["method"] + [metric_label(k) for k in metrics],
                          [[label] + [_best_cell(k, b[k], label) for k in metrics]
                           for label, b in s["best"][threshold].items()])
            out += [""] + [f"- {v}" for v in s["verdicts"][threshold]]
        grid = s["grid"]
        if grid["target"] is not None:
            out += ["", f"Grid (`grids_{sampler}.png`): target forbidden share {_pct(grid['target'])}; points: "
                    + ", ".join(f"{label} `{name}`" for label, name in grid["points"].items()) + "."]
        out += ["", "All points:", ""]
        out += _table(["method", "scale", "p_max", "forbidden share"] + [metric_label(k) for k in metrics]
                      + ["samples/s"], [_point_cells(r, metrics) for r in sampler_rows(rows, sampler)])
        out.append("")
    return "\n".join(out)


def _best_cell(key: str, best: dict | None, label: str) -> str:
    if best is None:
        return "no point qualifies"
    method = label.split()[0].lower()
    return f"{_format(key, best['value'])} ({scale_name(method)} {best['scale']:g}, {_pct(best['forbidden_share'])})"


def _point_cells(row: dict, metrics: list[str]) -> list[str]:
    method = BASELINE_LABELS.get(row["method"], row["method"].upper())
    p_max = "-" if row.get("p_max") is None else f"{row['p_max']:g}"
    speed = row.get("samples_per_second")
    return ([method, "-" if row["method"] in BASELINE_LABELS else f"{row['scale']:g}", p_max,
             _pct(row["forbidden_share"])] + [_format(k, _value(row, k)) for k in metrics]
            + ["-" if speed is None else f"{speed:g}"])


# ------------------------------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    return {"color": METHOD_COLORS[line.method], "marker": "s" if line.method == "np" else "^", "linestyle": "-"}


def _annotated(points: list) -> list:
    """A few points whose scale is printed next to the marker: both ends and the middle."""
    return [points[i] for i in sorted({0, len(points) // 2, len(points) - 1})] if points else []


def _plot_tradeoff_panel(ax, points: list[dict], key: str, dng_order: list[float]) -> None:
    for line, line_points in method_lines(points).items():
        xy = [(100 * r["forbidden_share"], _value(r, key), r) for r in line_points if _value(r, key) is not None]
        if not xy:
            continue
        ax.plot([x for x, _, _ in xy], [y for _, y, _ in xy], label=line.label, markersize=4, lw=1.2,
                **_line_style(line, dng_order))
        for x, y, r in _annotated(xy):
            ax.annotate(f"{r['scale']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        color=_line_style(line, dng_order)["color"])
    for method, marker, size in (("none", "*", 12), ("oracle", "X", 9)):
        row = baseline(points, method)
        if row is not None and _value(row, key) is not None:
            ax.plot([100 * row["forbidden_share"]], [_value(row, key)], marker=marker, markersize=size,
                    linestyle="none", color="black" if method == "none" else "dimgray",
                    label=BASELINE_LABELS[method])
    values = [_value(r, key) for r in points if _value(r, key) is not None]
    if _spans_decades(values) and min(values) > 0:
        ax.set_yscale("log")
        _plain_numbers(ax.yaxis)
    ax.set_ylabel(metric_label(key), fontsize=8)
    ax.grid(True, which="both", alpha=0.25)


def tradeoff_figure(rows: list[dict], preset: RemovalPreset, metrics: list[str], path: Path) -> None:
    """Paper Fig. 4 layout: metrics down (KL, then each kept-class FID), samplers across."""
    plt = _plt()
    samplers = samplers_present(rows)
    dng_order = sorted({r["p_max"] for r in rows if r["method"] == "dng" and r.get("p_max") is not None})
    fig, axes = plt.subplots(len(metrics), len(samplers), figsize=(5.2 * len(samplers), 3.0 * len(metrics) + 0.9),
                             squeeze=False, sharex="col", layout="constrained")
    for col, sampler in enumerate(samplers):
        points = sampler_rows(rows, sampler)
        for row_index, key in enumerate(metrics):
            ax = axes[row_index, col]
            _plot_tradeoff_panel(ax, points, key, dng_order)
            _share_axis(ax, [100 * r["forbidden_share"] for r in points])
            if row_index < len(metrics) - 1:
                ax.set_xlabel("")
        axes[0, col].set_title(sampler_title(rows, sampler), fontsize=10)
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.suptitle(f"{preset.dataset}: class {preset.removed} removed, preset {preset.name} (numbers at markers: "
                 "each method's scale)",
                 fontsize=10)
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


def posterior_figure(picked: dict[str, tuple[str, dict]], preset: RemovalPreset, points_dir_root: Path,
                     path: Path) -> None:
    """Per sampler (columns): p(t) (top) and lambda(t) on a log axis (bottom) of the picked DNG point's curve
    samples, red where the sample ends in the removed class."""
    from train.removal.sweep import load_point_tensors

    plt = _plt()
    fig, axes = plt.subplots(2, len(picked), figsize=(5.0 * len(picked), 5.6), squeeze=False, sharex="col",
                             layout="constrained")
    for col, (title, row) in enumerate(picked.values()):
        curves = row["curves"]
        steps = np.asarray(curves["step"], dtype=float)
        p, lam = np.asarray(curves["p"], dtype=float), np.asarray(curves["lambda"], dtype=float)
        try:
            labels = load_point_tensors(points_dir_root, row["name"])["labels"][: p.shape[1]].numpy()
        except FileNotFoundError:
            labels = np.full(p.shape[1], -1)
        for i in sorted(range(p.shape[1]), key=lambda i: labels[i] == preset.removed):  # removed class on top
            color = "#d62728" if labels[i] == preset.removed else "#1f77b4"
            axes[0, col].plot(steps, p[:, i], color=color, lw=0.9, alpha=0.8)
            axes[1, col].plot(steps, lam[:, i], color=color, lw=0.9, alpha=0.8)
        p_max, lambda0 = row["p_max"], row["scale"]
        axes[0, col].axhline(p_max, color="gray", ls="--", lw=0.8)
        axes[0, col].axhline(preset.dng_prior, color="gray", ls=":", lw=0.8)
        axes[0, col].set_ylim(-0.02, 1.02)
        axes[0, col].set_ylabel("posterior p(removed class | x_t)", fontsize=8)
        axes[0, col].set_title(f"{title}: DNG lambda0 {lambda0:g}, p_max {p_max:g}\nforbidden "
                               f"{_pct(row['forbidden_share'])}", fontsize=9)
        axes[1, col].axhline(lambda0 * p_max / (1 - p_max), color="gray", ls="--", lw=0.8)
        axes[1, col].set_yscale("log", nonpositive="mask")
        _plain_numbers(axes[1, col].yaxis)
        axes[1, col].set_ylabel("guidance scale lambda(t)", fontsize=8)
        axes[1, col].set_xlabel("sampler step (0 = pure noise)")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.25)
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], color="#d62728", label=f"ends in removed class {preset.removed}"),
              Line2D([], [], color="#1f77b4", label="ends in a kept class"),
              Line2D([], [], color="gray", ls="--", label="p_max / lambda cap lambda0 p_max/(1-p_max)"),
              Line2D([], [], color="gray", ls=":", label=f"prior {preset.dng_prior:g}")]
    fig.legend(handles=legend, loc="outside lower center", ncol=4, fontsize=7)
    save_png(fig, path)


# ------------------------------------------------------------------------------------------ entry point
def write_report(rows: list[dict], preset: RemovalPreset, points_dir_root, report_dir) -> dict:
    """Write the figures and ``summary.md`` of a finished sweep into ``report_dir``.

    ``rows``: the points of ``points.json``; ``points_dir_root``: the sweep folder holding ``points/``.
    Returns ``{"metrics": [KL key, FID keys...], "files": {...}, "samplers": {sampler: {"title", "baselines",
    "best": {threshold: {line label: {metric: {"value", "scale", "forbidden_share", "name"} or None}}},
    "verdicts": {threshold: [sentence per metric]}, "grid": {"target", "points": {line label: point name}}}}}``.
    Thresholds are 0.01 and 0.05 (forbidden share); line labels "NP", "SLD", "DNG (p_max 0.99)".
    Grid rule (see :func:`grid_picks`): target = the smallest forbidden share every method line reaches, at
    least 1%; each line shows its point closest to it.
    """
    points_dir_root, report_dir = Path(points_dir_root), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = [KL_KEY] + fid_keys(preset, rows)
    samplers = samplers_present(rows)
    summary = {"metrics": metrics, "files": {"grids": {}},
               "samplers": {s: sampler_summary(rows, s, metrics) for s in samplers}}

    if samplers:
        tradeoff_figure(rows, preset, metrics, report_dir / "tradeoff.png")
        summary["files"]["tradeoff"] = str(report_dir / "tradeoff.png")
    curve_points = {}
    for sampler in samplers:
        points = sampler_rows(rows, sampler)
        target, picks = grid_picks(method_lines(points))
        path = report_dir / f"grids_{sampler}.png"
        grid_figure(points, sampler_title(rows, sampler), target, picks, points_dir_root, preset.removed, path)
        summary["files"]["grids"][sampler] = str(path)
        picked = curve_pick(target, picks)
        if picked is not None:
            curve_points[sampler] = (sampler_title(rows, sampler), picked)
            summary["samplers"][sampler]["curve_point"] = picked["name"]
    if curve_points:
        posterior_figure(curve_points, preset, points_dir_root, report_dir / "posterior_curves.png")
        summary["files"]["posterior_curves"] = str(report_dir / "posterior_curves.png")
    (report_dir / "summary.md").write_text(summary_markdown(preset, rows, summary, metrics))
    summary["files"]["summary"] = str(report_dir / "summary.md")
    return summary
