"""The class-removal study's report: per-point intervals, the model-quality check, the matched-share comparison
and its verdicts (:mod:`train.removal.analysis`), the figures (:mod:`train.removal.figures`) and the Markdown
summary (:mod:`train.removal.summary`).

``write_report(rows, preset, points_dir_root, report_dir)`` writes into ``report_dir``: ``tradeoff.png``,
``grids_<sampler>.png``, ``posterior_curves.png``, ``summary.md``, ``intervals.csv`` (every point: share, KL and
quality metrics with 95% intervals and floors), ``matched.csv`` (every line at every kept target share) and
``comparisons.csv`` (the paired differences and their verdicts).
"""

from __future__ import annotations

import csv
from pathlib import Path

from train.removal.analysis import (
    KL_KEY,
    Draws,
    Line,
    Matched,
    PointStats,
    matched_share,
    method_lines,
    point_stats,
    quality_checks,
    quality_keys,
)
from train.removal.figures import grid_figure, posterior_figure, tradeoff_figure
from train.removal.presets import SAMPLERS, RemovalPreset
from train.removal.summary import sampler_title, summary_markdown, verdict_sentences

GRID_MIN_TARGET = 0.01  # the grid's matched share is never below 1% (a 0% target is a guess on few samples)


def samplers_present(rows: list[dict]) -> list[str]:
    found = {r["sampler"] for r in rows}
    return [s for s in SAMPLERS if s in found] + sorted(found - set(SAMPLERS))


def sampler_rows(rows: list[dict], sampler: str) -> list[dict]:
    return [r for r in rows if r["sampler"] == sampler]


# ------------------------------------------------------------------------------------------ grids
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
    """The DNG point of the posterior figure: among the grid's DNG picks with curves, one with the most samples
    (the decisive points: the group bands rest on more samples of each kind), of those the closest to the target
    (ties: the lower p_max, the one np-schedule follows by default)."""
    dng = [(line, r) for line, r in picks.items() if line.method == "dng" and r.get("curves")]
    if not dng:
        return None
    return min(dng, key=lambda lr: (-lr[1].get("samples", 0), abs(lr[1]["forbidden_share"] - target),
                                    lr[0].p_max or 0.0))[1]


# ------------------------------------------------------------------------------------------ tables on disk
def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _interval_cells(interval) -> list:
    return [interval.value, interval.low, interval.high] if interval is not None else ["", "", ""]


def write_tables(report_dir: Path, rows: list[dict], stats: dict[str, PointStats], keys: list[str],
                 matched: dict[str, Matched]) -> dict[str, str]:
    header = ["name", "sampler", "method", "scale", "p_max", "samples", "forbidden_share", "share_low", "share_high",
              "kl_uniform_kept", "kl_low", "kl_high"]
    for key in keys:
        header += [key, f"{key}_low", f"{key}_high", f"{key}_floor"]
    body = []
    for r in rows:
        s = stats[r["name"]]
        cells = [r["name"], r["sampler"], r["method"], r["scale"], r.get("p_max"), s.samples,
                 *_interval_cells(s.share), *_interval_cells(s.kl)]
        for key in keys:
            cells += [*_interval_cells(s.quality.get(key)), s.floor.get(key, "")]
        body.append(cells)
    _write_csv(report_dir / "intervals.csv", header, body)
    lines_body, comparison_body = [], []
    for sampler, m in matched.items():
        for (target, label, key), interval in m.values.items():
            lines_body.append([sampler, m.samples, target, label, key, *_interval_cells(interval)])
        for c in m.comparisons:
            comparison_body.append([sampler, m.samples, c.target, c.first, c.second, c.key,
                                    *_interval_cells(c.difference), c.verdict])
    _write_csv(report_dir / "matched.csv", ["sampler", "samples", "target_share", "line", "metric", "value", "low",
                                            "high"], lines_body)
    _write_csv(report_dir / "comparisons.csv", ["sampler", "samples", "target_share", "first", "second", "metric",
                                                "difference", "low", "high", "verdict"], comparison_body)
    return {name: str(report_dir / f"{name}.csv") for name in ("intervals", "matched", "comparisons")}


# ------------------------------------------------------------------------------------------ entry point
def _read_point(points_dir_root: Path, name: str, wanted) -> dict:
    """The arrays of a point's safetensors file whose names pass ``wanted`` (only those are read)."""
    from safetensors import safe_open

    with safe_open(str(points_dir_root / "points" / f"{name}.safetensors"), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys() if wanted(k)}


def _point_arrays(points_dir_root: Path, name: str) -> dict:
    """A point's labels and resample arrays (not its images or features)."""
    return _read_point(points_dir_root, name, lambda k: k == "labels" or k.startswith("resample_"))


def _images(points_dir_root: Path, name: str):
    return _read_point(points_dir_root, name, lambda k: k == "images")["images"]


def p_max_agreement(points: list[dict], points_dir_root: Path) -> list[dict]:
    """For each DNG lambda0 run at several p_max: how many of the samples they share (sample i saw the same
    noise) differ from the smallest p_max's. None differ where the larger cap never changed a sample."""
    by_scale: dict[float, list[dict]] = {}
    for r in points:
        if r["method"] == "dng" and r.get("p_max") is not None:
            by_scale.setdefault(r["scale"], []).append(r)
    out = []
    for scale, group in sorted(by_scale.items()):
        group.sort(key=lambda r: r["p_max"])
        base = _images(points_dir_root, group[0]["name"])
        for other in group[1:]:
            images = _images(points_dir_root, other["name"])
            n = min(len(base), len(images))
            differing = int((base[:n] != images[:n]).reshape(n, -1).any(axis=1).sum())
            out.append({"scale": scale, "p_max": [group[0]["p_max"], other["p_max"]], "compared": n,
                        "differing": differing})
    return out


def write_report(rows: list[dict], preset: RemovalPreset, points_dir_root, report_dir) -> dict:
    """Write the figures, ``summary.md`` and the CSV tables of a finished sweep into ``report_dir``.

    ``rows``: the points of ``points.json``; ``points_dir_root``: the sweep folder holding ``points/`` (each point's
    labels and resamples are read from its safetensors file). Returns ``{"metrics": [KL key, quality keys...],
    "files": {...}, "samplers": {sampler: {"title", "quality_check": [{"metric", "oracle", "unguided",
    "difference", "floor", "outcome"}], "matched": {"samples", "lines", "targets", "skipped"}, "verdicts":
    [sentence...], "grid": {"target", "points"}, "p_max_agreement": [{"scale", "p_max", "compared",
    "differing"}], "curve_point"}}}``.
    """
    points_dir_root, report_dir = Path(points_dir_root), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    keys = quality_keys(rows)
    num_classes = len(rows[0]["class_histogram"]) if rows else 0
    draws = Draws()
    stats = {r["name"]: point_stats(r, _point_arrays(points_dir_root, r["name"]), preset.removed, num_classes, keys,
                                    draws) for r in rows}
    samplers = samplers_present(rows)
    summary = {"metrics": [KL_KEY, *keys], "files": {"grids": {}}, "samplers": {}}
    matched, checks, curve_points = {}, {}, {}
    for sampler in samplers:
        points = sampler_rows(rows, sampler)
        title = sampler_title(rows, sampler)
        checks[sampler] = quality_checks(stats, points, keys)
        matched[sampler] = matched_share(points, stats, keys, checks[sampler])
        target, picks = grid_picks(method_lines(points))
        path = report_dir / f"grids_{sampler}.png"
        grid_figure(points, title, target, picks, points_dir_root, preset.removed, path)
        summary["files"]["grids"][sampler] = str(path)
        picked = curve_pick(target, picks)
        entry = {"title": title,
                 "quality_check": [{"metric": c.key, "oracle": c.oracle, "unguided": c.unguided,
                                    "difference": c.difference.as_dict(), "floor": c.floor, "outcome": c.outcome}
                                   for c in checks[sampler]],
                 "matched": {"samples": matched[sampler].samples, "lines": matched[sampler].lines,
                             "targets": matched[sampler].targets, "skipped": matched[sampler].skipped},
                 "verdicts": verdict_sentences(sampler_title(rows, sampler, brackets=False), matched[sampler]),
                 "grid": {"target": target, "points": {line.label: r["name"] for line, r in picks.items()}},
                 "p_max_agreement": p_max_agreement(points, points_dir_root)}
        if picked is not None:
            curve_points[sampler] = (title, picked)
            entry["curve_point"] = picked["name"]
        summary["samplers"][sampler] = entry
    if samplers:
        by_sampler = {s: (sampler_title(rows, s), sampler_rows(rows, s)) for s in samplers}
        metrics = [KL_KEY] + [k for k in keys if k.endswith("_kept")]  # the balanced ones: in the tables
        tradeoff_figure(rows, stats, by_sampler, metrics, f"{preset.dataset}: class {preset.removed} removed, "
                        f"preset {preset.name}", report_dir / "tradeoff.png")
        summary["files"]["tradeoff"] = str(report_dir / "tradeoff.png")
    if curve_points:
        posterior_figure(curve_points, preset.removed, preset.dng_prior, report_dir / "posterior_curves.png")
        summary["files"]["posterior_curves"] = str(report_dir / "posterior_curves.png")
    summary["files"] |= write_tables(report_dir, rows, stats, keys, matched)
    text = summary_markdown(preset, rows, stats, keys, checks, matched, summary)
    (report_dir / "summary.md").write_text(text)
    summary["files"]["summary"] = str(report_dir / "summary.md")
    return summary

