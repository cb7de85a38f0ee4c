"""docs/dng-tracking.md's posterior-tracking tables, written from a toy run's ``summary.json``.

    python -m negguide.toy.tables out/toy/summary.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .low_dimensional import LOW_D_TRACKERS
from .study import AUTO_DETERMINISTIC, DETERMINISTIC_TRACKERS, STOCHASTIC_TRACKER

NAMES = {"transition-beta": "transition (the sampler's own)",
         "transition-beta_tilde": "transition, beta_tilde", "flow-moment": "moment",
         "flow-hutchinson-1": "Hutchinson x1", "flow-hutchinson-1+evidence": "Hutchinson x1, evidence start",
         "flow-hutchinson-1+evidence+deflated": "Hutchinson x1, evidence start, deflated",
         "flow-hutchinson-2": "Hutchinson x2", "flow-gated-1+evidence": "gated, Rademacher probes",
         "flow-gated-1+evidence+deflated": "**gated**, deflated probes (auto)",
         "flow-exact": "exact divergence", "flow-exact+evidence": "exact, evidence start",
         "transition-sampler": "transition (Euler a)"}
PROBE_ROWS = "probe rows per image and step"  # the summary's average_probe_rows (table column and plot axis)


def _cell(r: dict) -> str:
    """End / time-averaged error (forbidden samples found / false alarms: kept-mode samples flagged)."""
    found = r["forbidden_found"]
    found = "-" if found != found else f"{100 * found:.0f}%"
    return (f"{r['mean_abs_error_final']:.3f} / {r['mean_abs_error_time']:.3f} "
            f"({found} / {100 * r['false_alarms']:.1f}%)")


def one_dimensional(summary: dict) -> str:
    """Per sampler and step count, per tracker: end / time-averaged error (found / false alarms). A stochastic
    sampler's own transition variance goes in the first column, DDPM's beta_tilde tracker in the second."""
    by = summary["posterior_tracking_by_tracker"]
    first = list(STOCHASTIC_TRACKER.values())[0]  # names the first column
    lines = ["| sampler | steps | " + " | ".join(NAMES.get(s, s) for s in (first, *DETERMINISTIC_TRACKERS)) + " |",
             "|---|---|" + "---|" * (1 + len(DETERMINISTIC_TRACKERS))]
    for sampler, by_steps in by.items():
        for steps, trackers in by_steps.items():
            own_spec = STOCHASTIC_TRACKER.get(sampler)
            cells = [_cell(trackers[own_spec]) if own_spec in trackers else ""]
            cells += [_cell(trackers[s]) if s in trackers else "" for s in DETERMINISTIC_TRACKERS]
            lines.append(f"| {sampler} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_tracker(summary: dict) -> str:
    """Over every high-dimensional configuration: error, configurations within 0.03, probe rows, found, alarms."""
    lines = [f"| tracker | {PROBE_ROWS} | mean end error | worst | <= 0.03 | found | false alarms (mean / worst) |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["high_dimensional_tracking_by_tracker"]:
        lines.append(f"| {NAMES.get(r['tracker'], r['tracker'])} | {r['average_probe_rows']:.2f} | "
                     f"{r['mean_error']:.4f} | {r['worst_error']:.4f} | {r['within_0.03']}/{r['configurations']} | "
                     f"{100 * r['forbidden_found']:.0f}% | {100 * r['false_alarms']:.1f}% / "
                     f"{100 * r['worst_false_alarms']:.1f}% |")
    return "\n".join(lines)


def per_configuration(summary: dict, trackers=("flow-hutchinson-1+evidence", "flow-gated-1+evidence",
                                               AUTO_DETERMINISTIC)) -> str:
    """Per mixture, dimension, sampler and step count, over the seeds: mean (worst) end error and probe rows. A
    tracker the run did not include (the default size runs fewer than ``--full``) gets no column."""
    rows = summary["high_dimensional_tracking"]
    trackers = tuple(t for t in trackers if any(r["tracker"] == t for r in rows))

    def cell(mine: list[dict]) -> str:
        errors = [r["mean_abs_error_final"] for r in mine]
        probes = sum(r["average_probe_rows"] for r in mine) / len(mine)
        return f"{sum(errors) / len(errors):.3f} ({max(errors):.3f}), {probes:.2f} rows"

    return _by_configuration(rows, trackers, cell)


def _by_configuration(rows: list[dict], trackers, cell) -> str:
    """A table with a row per (mixture, dim, sampler, steps) and a column per tracker; ``cell`` formats a
    tracker's rows of one configuration (one per seed)."""
    def key(r: dict) -> tuple:
        return r["mixture"], r["dim"], r["sampler"], r["steps"]

    lines = ["| mixture | dim | sampler | steps | " + " | ".join(NAMES.get(t, t) for t in trackers) + " |",
             "|---|---|---|---|" + "---|" * len(trackers)]
    for k in dict.fromkeys(key(r) for r in rows if r["tracker"] in trackers):
        cells = [cell([r for r in rows if key(r) == k and r["tracker"] == t]) for t in trackers]
        lines.append("| " + " | ".join(str(v) for v in k) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wilson(found: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial share ``found / total``."""
    if total == 0:
        return float("nan"), float("nan")
    share, z2 = found / total, z * z / total
    centre = (share + z2 / 2) / (1 + z2)
    half = z * math.sqrt(share * (1 - share) / total + z2 / (4 * total)) / (1 + z2)
    return centre - half, centre + half


def low_dimensional(summary: dict, trackers=LOW_D_TRACKERS) -> str:
    """Per mixture, sampler and step count, pooled over the seeds: forbidden samples found (of how many, 95% Wilson
    interval), end error mean (worst seed) and probe rows per image and step."""
    def cell(mine: list[dict]) -> str:
        total = sum(r["forbidden_samples"] for r in mine)
        found = sum(round(r["forbidden_found"] * r["forbidden_samples"]) for r in mine if r["forbidden_samples"])
        low, high = wilson(found, total)
        errors = [r["mean_abs_error_final"] for r in mine]
        rows_spent = sum(r["average_probe_rows"] for r in mine) / len(mine)
        return (f"{100 * found / max(1, total):.1f}% of {total} [{100 * low:.1f}-{100 * high:.1f}], "
                f"{sum(errors) / len(errors):.3f} ({max(errors):.3f}), {rows_spent:.2f} rows")

    return _by_configuration(summary["low_dimensional_tracking"], trackers, cell)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"error: no summary at {path} (write one with: bash run.sh toy --full --out DIR)", file=sys.stderr)
        return 2
    summary = json.loads(path.read_text())
    seeds = summary["high_dimensional_settings"]["seeds"]
    print(f"1-D mixture:\n\n{one_dimensional(summary)}\n\nhigh-dimensional mixtures, seeds {seeds}:\n\n"
          f"{per_tracker(summary)}\n\n{per_configuration(summary)}")
    if "low_dimensional_tracking" in summary:
        seeds = summary["low_dimensional_settings"]["seeds"]
        print(f"\nlow-dimensional multi-mode mixtures, seeds {seeds}:\n\n{low_dimensional(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
