"""The study's report: results.json (every number), tables in summary.md, the figures, and sample grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.t2i.figures import modes_figure

METHOD_LABELS = {"none": "no negative", "np": "negative prompt, every step", "windowed": "windowed (default)",
                 "dng": "DNG", "sld": "SLD", "perp_neg": "Perp-Neg", "adaptive": "adaptive window",
                 "cfg": "CFG alone", "dnp": "CFG + DNP", "generic": "CFG + generic negative", "dns": "DNS image"}


def pct(d: dict | None) -> str:
    if not d or d.get("denominator", 1) == 0 or d.get("value") is None or d["value"] != d["value"]:
        return "n/a"
    return f"{100 * d['value']:.1f}% [{100 * d['ci95'][0]:.1f}, {100 * d['ci95'][1]:.1f}]"


def num(d: dict | None, digits: int = 3) -> str:
    if not d or d.get("value") is None or d["value"] != d["value"]:
        return "n/a"
    low, high = d["ci95"]
    if low is None or high is None or low != low or high != high:  # too few resamples reached it for an interval
        return f"{d['value']:.{digits}f} [no interval]"
    return f"{d['value']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def step(d: dict) -> str:
    if d.get("median") is None:
        return "n/a"
    return f"{d['median']:g} [{d['ci95'][0]:g}, {d['ci95'][1]:g}] (n={d['n']})"


def removal_markdown(title: str, table: dict) -> list[str]:
    lines = [f"### {title}", "", "| method | removed | preserved | removed and preserved | exact match with what "
             "should remain | SSIM to no negative | detector FID to renders of what should remain |",
             "|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        if name.startswith("_"):
            continue
        lines.append(f"| {METHOD_LABELS.get(name, name)} | {pct(row['removed'])} | {pct(row['preserved'])} | "
                     f"{pct(row['removed_and_preserved'])} | {pct(row['kept_exact'])} | {num(row['ssim_to_none'])} | "
                     f"{row['fid_to_kept']:.2f} |")
    lines += ["", f"FID floor (two render sets of what should remain): {table['_floor']['fid_to_kept']:.2f}.", ""]
    return lines


def critical_markdown(kind: str, result: dict) -> list[str]:
    s = result["summary"]
    return [f"- **{kind} negatives** ({result['images']} images): the target becomes detectable in the x0 estimate "
            f"without a negative at step {step(s['detectable_without_negative'])}; the negative prompt's effect on it "
            f"starts at step {step(s['negative_effect_starts'])}; per image, effect minus detectable: "
            f"{step(s['effect_minus_detectable'])} steps; r_t peaks at step {step(s['r_t_peak'])}."]


def critical_figure(results: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.2 * len(results), 6.2), squeeze=False, sharex=True,
                             layout="constrained")
    x = np.arange(1, steps + 1)
    for col, (kind, res) in enumerate(results.items()):
        per = res["per_step"]
        for key, label, color in (("r_t", "r_t (negative / positive attention)", "#d62728"),):
            mean = np.array([d["value"] for d in per[key]])
            low = np.array([d["ci95"][0] for d in per[key]])
            high = np.array([d["ci95"][1] for d in per[key]])
            axes[0, col].plot(x, mean, color=color, label=label)
            axes[0, col].fill_between(x, low, high, color=color, alpha=0.2)
        axes[0, col].axhline(1, color="gray", lw=0.8, ls=":")
        axes[0, col].set_title(f"{kind} negatives: r_t (Ban et al. Eq. 6), mean and 95% interval", fontsize=9)
        what = "target present" if kind == "object" else "target has the negated texture"
        for key, label, color in (("presence_none", "no negative", "#1f77b4"),
                                  ("presence_np", "negative prompt, every step", "#ff7f0e")):
            mean = np.array([d["value"] for d in per[key]])
            low = np.array([d["ci95"][0] for d in per[key]])
            high = np.array([d["ci95"][1] for d in per[key]])
            axes[1, col].plot(x, mean, color=color, label=label)
            axes[1, col].fill_between(x, low, high, color=color, alpha=0.2)
        axes[1, col].set_ylim(-0.02, 1.02)
        axes[1, col].set_ylabel(f"detector: P({what}) in x0 estimate", fontsize=8)
        axes[1, col].set_xlabel("sampler step")
        axes[1, col].legend(fontsize=7)
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sweep_figure(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    starts = sorted(sweep)
    med = [sweep[s]["needed"]["median"] for s in starts]
    low = [sweep[s]["needed"]["ci95"][0] for s in starts]
    high = [sweep[s]["needed"]["ci95"][1] for s in starts]
    valid = [i for i, m in enumerate(med) if m is not None]
    ax.errorbar([starts[i] for i in valid], [med[i] for i in valid],
                yerr=[[med[i] - low[i] for i in valid], [high[i] - med[i] for i in valid]], marker="o", capsize=3)
    ax2 = ax.twinx()
    ax2.plot(starts, [100 * sweep[s]["removable"]["value"] for s in starts], color="gray", ls="--", marker=".")
    ax2.set_ylabel("% of images some window removes", color="gray", fontsize=8)
    ax.set_xlabel("window start step")
    ax.set_ylabel("window steps needed to remove (median)")
    ax.set_title("When to start the negative (Ban et al. Fig. 9 analogue)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_figure(cells: dict, cases, seeds: int, path: Path, count: int = 8) -> None:
    """The first `count` images (same seeds) of every method of a section, one row per method."""
    count = min(count, len(next(iter(cells.values())).images))
    rows = [(METHOD_LABELS.get(name, name), cell.images[:count]) for name, cell in cells.items()]
    shown = sorted({i // seeds for i in range(count)})
    title = "; ".join(f"'{cases[i].prompt}' without '{cases[i].negative}'" for i in shown)
    modes_figure(rows, f"{title} ({seeds} seeds each)").save(path)


def write_json(path: Path, data: dict) -> None:
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, (np.floating, np.integer)):
            return clean(o.item())
        return o

    path.write_text(json.dumps(clean(data), indent=1))


CONCEPT_LABELS = {"none": "no negative", "np": "NP, constant scale lambda", "sld": "SLD", "dng": "DNG"}
CONCEPT_KINDS = {"concept-unnamed": "Prompts that do not name red", "concept-named": "Prompts that name a red object"}
CONCEPT_METRICS = {"preserved": "preserved", "ssim": "SSIM to no negative", "kl_colour": "KL colours",
                   "kl_shape": "KL shapes"}


def concept_markdown(kind: str, result: dict) -> list[str]:
    """Section d for one prompt kind: the points, then the methods at matched red share with DNG's paired
    differences."""
    metrics = [k for k in CONCEPT_METRICS if kind == "concept-unnamed" or not k.startswith("kl")]
    head = " | ".join(CONCEPT_METRICS[k] for k in metrics)
    lines = [f"### {CONCEPT_KINDS[kind]} ({result['prompts']} prompts, {result['images']} images)", "",
             f"| method | strength | red share | {head} |", "|---|---|---|" + "---|" * len(metrics)]

    def cells(point):
        return " | ".join(num(point[k]) if k != "preserved" else pct(point[k]) for k in metrics)

    none = result["points"]["none"]
    lines.append(f"| no negative | - | {pct(none['red_share'])} | {cells(none)} |")
    for method, points in result["points"].items():
        if method == "none":
            continue
        for p in points:
            knob = next(k for k in p if k not in ("red_share", *CONCEPT_METRICS))
            lines.append(f"| {CONCEPT_LABELS[method]} | {knob} {p[knob]:g} | {pct(p['red_share'])} | "
                         f"{cells(p)} |")
    lines += ["", "At matched red share (interpolated along each method's curve; n/a: not reached in >= 90% of the "
                  "resamples):", "", f"| red share | method | {head} |", "|---|---|" + "---|" * len(metrics)]
    for target, row in result["matched"].items():
        for method, values in row.items():
            label = CONCEPT_LABELS.get(method) or method.replace("_minus_", " - ").upper() + " (paired)"
            lines.append(f"| {100 * float(target):g}% | {label} | "
                         + " | ".join(num(values[k]) for k in metrics) + " |")
    return lines + [""]


def concept_figure(results: dict, path: Path) -> None:
    """Per prompt kind: preservation and SSIM against red share, one line per method (points by strength)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.2 * len(results), 6.4), squeeze=False,
                             layout="constrained")
    colours = {"np": "#ff7f0e", "sld": "#2ca02c", "dng": "#d62728"}
    for col, (kind, res) in enumerate(results.items()):
        base = res["points"]["none"]
        for row, key in enumerate(("preserved", "ssim")):
            ax = axes[row, col]
            for method, colour in colours.items():
                points = [base] + res["points"][method]
                x = [100 * p["red_share"]["value"] for p in points]
                y = [p[key]["value"] for p in points]
                xerr = [[100 * (p["red_share"]["value"] - p["red_share"]["ci95"][0]) for p in points],
                        [100 * (p["red_share"]["ci95"][1] - p["red_share"]["value"]) for p in points]]
                yerr = [[p[key]["value"] - p[key]["ci95"][0] for p in points],
                        [p[key]["ci95"][1] - p[key]["value"] for p in points]]
                ax.errorbar(x, y, xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), marker="o", ms=3,
                            capsize=2, color=colour, label=CONCEPT_LABELS[method], lw=1)
            ax.set_xlabel("images with a red object (%)")
            ax.set_ylabel(CONCEPT_METRICS[key])
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            ax.set_title(f"{kind}: {CONCEPT_METRICS[key]} against red share", fontsize=9)
        axes[0, col].legend(fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def signal_markdown(calibration: dict) -> list[str]:
    if calibration["chosen"] is None:
        return ["", f"No target became detectable in the {calibration['images']} object-case images without a "
                "negative: the start signals cannot be calibrated, section b's adaptive window uses the core's "
                "default signal and threshold.", ""]
    lines = ["", f"The adaptive window's start signals against the critical step ({calibration['with_critical_step']} "
             f"of {calibration['images']} object-case images whose target becomes detectable; steps 1-based, "
             "thresholds and the constant chosen on these images):", "",
             "| start rule | mean \\|start - critical\\| (steps) | minus the constant's (paired) | median start - "
             "critical | correlation of start with critical |", "|---|---|---|---|---|"]
    for name, row in calibration["signals"].items():
        rule = f"{name} {'<=' if name == 'gap' else '>='} {row['threshold']:g}"
        if name == "posterior":
            rule = f"DNG's posterior p >= {row['threshold']:g} (not an adaptive-mode signal)"
        corr = "n/a" if row["correlation"] is None else f"{row['correlation']:.2f}"
        lines.append(f"| {rule} | {num(row['mean_abs_error'], 2)} | {num(row['minus_constant'], 2)} | "
                     f"{step(row['start_minus_critical'])} | {corr} |")
    constant = calibration["constant"]
    lines += [f"| constant start at step {constant['start'] + 1} | {num(constant['mean_abs_error'], 2)} | 0 | | |",
              "", f"Section b's adaptive window uses the `{calibration['chosen']}` signal at its best threshold (the "
              "best of the adaptive mode's own signals).", ""]
    return lines
