"""The class-removal report's ``summary.md``: the model-quality check first, then the matched-share comparison
and its verdicts (written from the intervals, never from point estimates alone), what DNG's posterior does on
each sampler (from the recorded curves), and every point with its intervals."""

from __future__ import annotations

import numpy as np

from train.removal.analysis import (
    BASELINE_LABELS,
    KL_KEY,
    Matched,
    PointStats,
    QualityCheck,
)
from train.removal.figures import display_scale, metric_label, scale_name
from train.removal.paired import LEVEL, RESAMPLES
from train.removal.presets import RemovalPreset


def sampler_title(rows: list[dict], sampler: str, brackets: bool = True) -> str:
    steps = ", ".join(map(str, sorted({r["steps"] for r in rows if r["sampler"] == sampler})))
    return f"{sampler.upper()} ({steps} steps)" if brackets else f"{sampler.upper()}, {steps} steps"


def _number(key: str, value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    if key == KL_KEY:
        return f"{value:.4f}"
    return f"{value * display_scale(key):.2f}"


def _with_interval(key: str, interval) -> str:
    if interval is None or not np.isfinite(interval.value):
        return "-"
    text = _number(key, interval.value)
    if np.isfinite(interval.low):
        text += f" [{_number(key, interval.low)}, {_number(key, interval.high)}]"
    elif interval.drawn:  # e.g. a share near a line's end, which many resampled curves do not reach
        text += f" (no interval: {interval.resamples} of {interval.drawn} resamples define it)"
    return text


def _share(interval) -> str:
    text = f"{100 * interval.value:.2f}%"
    if np.isfinite(interval.low):
        text += f" [{100 * interval.low:.2f}, {100 * interval.high:.2f}]"
    return text


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # "||" of the KL label

    return [line(header), "|" + "---|" * len(header)] + [line(r) for r in body]


def _target(target: float) -> str:
    return f"{100 * target:g}%"


def verdict_sentences(title: str, matched: Matched) -> list[str]:
    """One sentence per paired comparison at a matched share, its verdict read off the interval."""
    out = []
    for c in matched.comparisons:
        d = c.difference
        interval = f" [{_number(c.key, d.low)}, {_number(c.key, d.high)}]" if np.isfinite(d.low) else ""
        out.append(f"At {_target(c.target)} forbidden ({title}), {metric_label(c.key)}: {c.first} - {c.second} = "
                   f"{_number(c.key, d.value)}{interval}: {c.verdict}.")
    return out


def _reference_text(preset: RemovalPreset) -> str:
    count = preset.fid_reference_count
    subset = ("all training images" if count is None
              else f"a fixed pseudo-random subset of {count:,} training images (train/data.py's seeded `limit`)")
    return (f"FID and KID references: {subset} without class {preset.removed} (`kept`), and the same with it "
            f"for `fid_*_all` (points.csv). Floor: the same metrics of held-out real images (the test split without "
            f"class {preset.removed}, as many as the point has samples or all of them) against the same reference: "
            "what a perfect generator would score at that sample count.")


def _definitions(preset: RemovalPreset) -> list[str]:
    return [
        "Forbidden share: the classifier's share of samples in the removed class. KL: KL(uniform over the kept "
        "classes || generated class histogram). " + _reference_text(preset) + " KID x1e3: the unbiased squared "
        "MMD (cubic kernel) x 1000, against every reference image. Balanced: each kept class weighted to its "
        "reference share, the removed class to 0 (image quality given the class, not the class mix). Lower is "
        "better on every metric.",
        "",
        f"Intervals: {100 * LEVEL:g}% percentile bootstrap over sample indices ({RESAMPLES} resamples; FID: the "
        f"first {preset.fid_resamples}, their median moved onto the estimate: repeated images inflate a "
        "resample's FID by its small-sample bias, several times its spread), the same index draws for every "
        "point with the same sample count, which all saw the same noise for sample i: differences between points "
        "are paired. Matched share: each line is "
        "interpolated linearly in forbidden share along its points ordered by scale, in every resample too, at the "
        "fixed targets 1%, 2% and 5%, each kept only where every line brackets it (decisive points only: those with "
        "the sampler's largest sample count); a value has no interval where fewer than 90% of the resampled "
        "curves reach the target. A verdict is *supported* only where the 95% interval of the paired "
        "difference excludes 0; a quality metric gets verdicts only if it passed the model-quality check.",
        "",
        "Figures: `tradeoff.png` (intervals as error bars), `grids_<sampler>.png`, `posterior_curves.png`. Tables: "
        "`intervals.csv`, `matched.csv`, `comparisons.csv`, `points.csv`.",
    ]


def _quality_section(checks: list[QualityCheck], oracle_share) -> list[str]:
    out = ["### Model-quality check (before any comparison)", ""]
    if not checks:
        return out + ["No check: it needs the unguided and the oracle point at the same sample count.", ""]
    out += _table(["metric", "oracle", "unguided", "oracle - unguided [95%]", "real vs real floor", "outcome"],
                  [[metric_label(c.key), _number(c.key, c.oracle), _number(c.key, c.unguided),
                    _with_interval(c.key, c.difference), _number(c.key, c.floor), c.outcome] for c in checks])
    ranking = [metric_label(c.key) for c in checks if c.ranks]
    unable = [metric_label(c.key) for c in checks if not c.ranks]
    out += ["", "The retrained oracle must score better than the unguided model on a quality metric before that "
            f"metric ranks methods. Ranks: {', '.join(ranking) or 'none'}. Cannot rank (no verdicts from them): "
            f"{', '.join(unable) or 'none'}."]
    if oracle_share is not None:
        out += ["", f"The oracle (trained without the class) is put in the removed class on {_share(oracle_share)} "
                "of its samples: the classifier's own floor on images without the class; shares near it are at the "
                "instrument's limit."]
    return out + [""]


def _matched_section(matched: Matched, keys: list[str], title: str) -> list[str]:
    out = [f"### Matched forbidden share (decisive points: {matched.samples} samples each)", ""]
    for target, missing in matched.skipped.items():
        out.append(f"- {_target(target)}: not compared; not bracketed by {', '.join(missing) or 'any line'}.")
    if not matched.targets:
        return out + ["", "No target share is bracketed by every line: no matched comparison.", ""]
    for target in matched.targets:
        out += ["", f"At {_target(target)} forbidden:", ""]
        shown = [KL_KEY] + [k for k in keys if any((target, line, k) in matched.values for line in matched.lines)]
        out += _table(["line"] + [metric_label(k) for k in shown],
                      [[line] + [_with_interval(k, matched.values.get((target, line, k))) for k in shown]
                       for line in matched.lines])
    out += ["", "Verdicts at a glance (the first line minus the second at the same forbidden share, paired; "
            "*lower* / *higher*: the 95% interval excludes 0; *n.s.*: it includes 0; *-*: the metric does not rank "
            "the oracle above the unguided model, no verdict):", ""]
    out += _verdict_table(matched)
    out += ["", "Verdicts (paired differences at matched share):", ""]
    out += [f"- {v}" for v in verdict_sentences(title, matched)]
    return out + [""]


def _verdict_cell(comparison) -> str:
    outcome = comparison.outcome
    return {"no verdict": "-", "lower": "**lower**", "higher": "**higher**"}.get(outcome, outcome)


def _verdict_table(matched: Matched) -> list[str]:
    """One row per (target, pair), one column per metric: the verdict word of each paired difference."""
    keys = list(dict.fromkeys(c.key for c in matched.comparisons))
    cells: dict[tuple[float, str, str], dict[str, str]] = {}
    for c in matched.comparisons:
        cells.setdefault((c.target, c.first, c.second), {})[c.key] = _verdict_cell(c)
    return _table(["share", "first - second"] + [metric_label(k) for k in keys],
                  [[_target(target), f"{first} - {second}"] + [row.get(k, "") for k in keys]
                   for (target, first, second), row in cells.items()])


def _p_max_lines(agreement: list[dict]) -> list[str]:
    if not agreement:
        return []
    out = ["", "Same lambda0, different p_max (the samples both points have, same noise):", ""]
    for a in agreement:
        low, high = a["p_max"]
        out.append(f"- lambda0 {a['scale']:g}: p_max {high:g} vs {low:g}: {a['differing']} of {a['compared']} "
                   "samples differ" + (" (the larger cap changed nothing)" if a["differing"] == 0 else "") + ".")
    return out


def _posterior_section(rows: list[dict], removed: int, agreement: list[dict]) -> list[str]:
    dng = [r for r in rows if r["method"] == "dng" and r.get("posterior_by_label")]
    if not dng:
        return []
    out = ["### What DNG's posterior does", "",
           "p at the last informative step (the last sampler step's evaluation: the step after it adds no noise, "
           "and the core's `finish()` is not applied) and one step before it, per group of samples by the class they "
           "end in:", ""]
    per_group = ["mean p a step before", "mean last p", "mean max p", "p ever > 0.5"]
    body = []
    for r in dng:
        s = r["posterior_by_label"]
        cells = [f"{r['scale']:g}", f"{r['p_max']:g}", f"{100 * r['forbidden_share']:.2f}%"]
        for group in ("removed", "kept"):
            g = s.get(group, {})
            before = f"{g['mean_p'][-2]:.3f}" if len(g.get("mean_p", ())) > 1 else "-"  # a 1-step run has none
            cells += ([f"{g['samples']}", before, f"{g['last_mean_p']:.3f}", f"{g['mean_max_p']:.3f}",
                       f"{100 * g['share_above_half']:.1f}%"] if g.get("samples") else ["0", *["-"] * len(per_group)])
        body.append(cells)
    out += _table(["lambda0", "p_max", "forbidden", f"n ending in {removed}", *per_group, "n kept", *per_group], body)
    return out + _p_max_lines(agreement) + [""]


def _points_section(rows: list[dict], stats: dict[str, PointStats], keys: list[str]) -> list[str]:
    out = ["### All points (95% intervals; floor: real vs real at the point's sample count)", ""]
    header = ["method", "scale", "p_max", "n", "forbidden share", metric_label(KL_KEY)]
    header += [metric_label(k) + " (floor)" for k in keys]
    body = []
    for r in rows:
        s = stats[r["name"]]
        method = BASELINE_LABELS.get(r["method"], r["method"].upper())
        cells = [method, "-" if r["method"] in BASELINE_LABELS else f"{r['scale']:g}",
                 "-" if r.get("p_max") is None else f"{r['p_max']:g}", str(s.samples), _share(s.share),
                 _with_interval(KL_KEY, s.kl)]
        cells += [f"{_with_interval(k, s.quality.get(k))} ({_number(k, s.floor.get(k))})" for k in keys]
        body.append(cells)
    return out + _table(header, body) + [""]


def summary_markdown(preset: RemovalPreset, rows: list[dict], stats: dict[str, PointStats], keys: list[str],
                     checks: dict[str, list[QualityCheck]], matched: dict[str, Matched], summary: dict) -> str:
    out = [f"# Class removal: {preset.dataset}, class {preset.removed} removed (preset `{preset.name}`)", "",
           *_definitions(preset), ""]
    for sampler, entry in summary["samplers"].items():
        points = [r for r in rows if r["sampler"] == sampler]
        title = entry["title"]
        out += [f"## {title}", ""]
        out += _quality_section(checks[sampler], matched[sampler].oracle_share)
        out += _matched_section(matched[sampler], keys, sampler_title(rows, sampler, brackets=False))
        out += _posterior_section(points, preset.removed, entry.get("p_max_agreement", []))
        grid = entry["grid"]
        if grid["target"] is not None:
            out += [f"Grid (`grids_{sampler}.png`): target forbidden share {100 * grid['target']:.2f}%; points: "
                    + ", ".join(f"{label} `{name}`" for label, name in grid["points"].items()) + ".", ""]
        out += _points_section(points, stats, keys)
    scales = ", ".join(f"{m.upper()}: {scale_name(m)}" for m in ("np", "sld", "dng", "np-schedule"))
    out += [f"Scales: {scales}."]
    return "\n".join(out) + "\n"
