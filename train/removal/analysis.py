"""The statistics behind the class-removal verdicts, from each point's saved per-sample labels and resamples.

Every point with N samples was measured on the same bootstrap index draws (``bootstrap_indices(N, RESAMPLES,
seed=0)``; the point's KID/FID resamples in its safetensors file are on those draws, see
:mod:`train.removal.evaluation`), and sample i of every point saw the same noise. So:

* per point: forbidden share, KL, and every quality metric with a 95% percentile interval; FID's draws are
  centred on the point estimate first (:func:`centred_fid_draws`);
* model-quality check (per sampler, before any comparison): oracle minus unguided on each quality metric, paired.
  "ranks": the interval lies below 0 (the metric sees that the model trained without the class is the better
  remover); "ranks the wrong way": above 0; else "unable to rank". A metric that does not rank gets no verdict;
* matched forbidden share (per sampler): among the points with the sampler's largest sample count (the decisive
  points), each line (NP, SLD, DNG per p_max, NP following DNG's lambda(t)) is interpolated linearly in share
  along its points ordered by scale (:func:`train.removal.paired.at_share`) at fixed targets, in every resample
  too. A target is kept only where every line brackets it. Differences DNG - NP, DNG - SLD and DNG - NP(lambda(t))
  are taken resample by resample (paired), and a verdict is "supported" only where the 95% interval of the
  difference excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from train.removal.metrics import kept_uniform_target
from train.removal.paired import RESAMPLES, Interval, at_share, bootstrap_indices, shares_and_kls

TARGET_SHARES = (0.01, 0.02, 0.05)
GUIDED_METHODS = ("np", "sld", "dng", "np-schedule")
BASELINE_LABELS = {"none": "unguided", "oracle": "oracle"}
KL_KEY = "kl_uniform_kept"
QUALITY_KINDS = (("fid", "kept"), ("kid", "kept"), ("fid", "balanced"), ("kid", "balanced"))


@dataclass(frozen=True)
class Line:
    """One curve: a guided method, and for DNG / np-schedule the (followed) p_max."""

    method: str
    p_max: float | None = None

    @property
    def label(self) -> str:
        if self.method == "dng":
            return f"DNG (p_max {self.p_max:g})"
        if self.method == "np-schedule":
            return f"NP lambda(t) of DNG (p_max {self.p_max:g})"
        return self.method.upper()


def method_lines(rows: list[dict]) -> dict[Line, list[dict]]:
    """The guided points of one sampler by line, each line's points sorted by scale."""
    lines: dict[Line, list[dict]] = {}
    for method in GUIDED_METHODS:
        points = [r for r in rows if r["method"] == method]
        p_maxes = sorted({r.get("p_max") for r in points}, key=lambda p: -1.0 if p is None else p)
        for p_max in p_maxes:
            line = Line(method, p_max if method in ("dng", "np-schedule") else None)
            lines[line] = sorted((r for r in points if r.get("p_max") == p_max), key=lambda r: r["scale"])
    return lines


def baseline(rows: list[dict], method: str) -> dict | None:
    return next((r for r in rows if r["method"] == method), None)


def quality_keys(rows: list[dict]) -> list[str]:
    """The quality metrics the points carry (Inception first), e.g. fid_inception_kept, kid_inception_kept."""
    keys = []
    for net in ("inception", "classifier"):
        keys += [f"{kind}_{net}_{selection}" for kind, selection in QUALITY_KINDS
                 if any(_finite(r.get(f"{kind}_{net}_{selection}")) for r in rows)]
    return keys


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


# ------------------------------------------------------------------------------------------ per point
@dataclass
class PointStats:
    """A point's share, KL and quality metrics with their intervals, and its resample draws (for pairing)."""

    name: str
    samples: int
    share: Interval
    kl: Interval
    share_draws: np.ndarray
    kl_draws: np.ndarray
    quality: dict[str, Interval] = field(default_factory=dict)
    quality_draws: dict[str, np.ndarray] = field(default_factory=dict)
    floor: dict = field(default_factory=dict)


class Draws:
    """The shared index draws per sample count (built once)."""

    def __init__(self):
        self._indices: dict[int, np.ndarray] = {}

    def __call__(self, samples: int) -> np.ndarray:
        if samples not in self._indices:
            self._indices[samples] = bootstrap_indices(samples, RESAMPLES, seed=0)
        return self._indices[samples]


def centred_fid_draws(value: float, draws: np.ndarray) -> np.ndarray:
    """FID's bootstrap draws shifted so that their median is the point estimate.

    A resample repeats images (about 63% of them distinct), and FID's covariance reads the repeats as a smaller
    sample: FID's small-sample bias grows, and the draws' median sits far above the estimate (on the MNIST sweep
    by 4-13 of their standard deviations, +4 to +5 FID), so a percentile interval would not even contain the
    estimate. The draws keep their spread, which is what the interval is for; differences and interpolations are
    taken on the centred draws. KID needs no such step: its resamples are unbiased (median within 0.1 standard
    deviations of the estimate there).
    """
    finite = draws[np.isfinite(draws)]
    return draws - (np.median(finite) - value) if len(finite) else draws


def point_stats(row: dict, tensors: dict, removed: int, num_classes: int, keys: list[str], draws: Draws) -> PointStats:
    """Intervals of one point from its labels and saved resamples."""
    labels = np.asarray(tensors["labels"]).astype(np.int64)
    target = kept_uniform_target(num_classes, removed).numpy()
    share, kl = shares_and_kls(labels, removed, target, None)
    share_draws, kl_draws = shares_and_kls(labels, removed, target, draws(len(labels)))
    stats = PointStats(row["name"], len(labels), Interval.of(share, share_draws), Interval.of(kl, kl_draws),
                       share_draws, kl_draws, floor=row.get("floor") or {})
    for key in keys:
        value = row.get(key)
        resampled = tensors.get(f"resample_{key}")
        if not _finite(value):
            continue
        if resampled is None:
            stats.quality[key] = Interval(float(value), float("nan"), float("nan"), 0)
            continue
        resampled = np.asarray(resampled, dtype=np.float64)
        stats.quality_draws[key] = centred_fid_draws(float(value), resampled) if key.startswith("fid_") else resampled
        stats.quality[key] = Interval.of(float(value), stats.quality_draws[key])
    return stats


# ------------------------------------------------------------------------------------------ quality check
@dataclass(frozen=True)
class QualityCheck:
    key: str
    oracle: float
    unguided: float
    difference: Interval  # oracle - unguided, paired
    floor: float | None

    @property
    def outcome(self) -> str:
        if not np.isfinite(self.difference.low):
            return "unable to rank"
        if self.difference.high < 0:
            return "ranks"
        if self.difference.low > 0:
            return "ranks the wrong way"
        return "unable to rank"

    @property
    def ranks(self) -> bool:
        return self.outcome == "ranks"


def quality_checks(stats: dict[str, PointStats], rows: list[dict], keys: list[str]) -> list[QualityCheck]:
    """Oracle vs unguided on every quality metric (empty without both baselines at the same sample count)."""
    oracle = next((stats[r["name"]] for r in rows if r["method"] == "oracle"), None)
    unguided = next((stats[r["name"]] for r in rows if r["method"] == "none"), None)
    if oracle is None or unguided is None or oracle.samples != unguided.samples:
        return []
    checks = []
    for key in keys:
        if key not in oracle.quality or key not in unguided.quality:
            continue
        value = oracle.quality[key].value - unguided.quality[key].value
        if key in oracle.quality_draws and key in unguided.quality_draws:
            with np.errstate(invalid="ignore"):  # undefined draws (inf - inf) count as missing
                draws = oracle.quality_draws[key] - unguided.quality_draws[key]
            difference = Interval.of(value, draws)
        else:
            difference = Interval(value, float("nan"), float("nan"), 0)
        checks.append(QualityCheck(key, oracle.quality[key].value, unguided.quality[key].value, difference,
                                   unguided.floor.get(key)))
    return checks


# ------------------------------------------------------------------------------------------ matched share
@dataclass(frozen=True)
class Comparison:
    """``first - second`` of one metric at one target share, paired over resamples."""

    first: str
    second: str
    key: str
    target: float
    difference: Interval
    metric_ranks: bool  # KL always; a quality metric only if it passed the model-quality check

    @property
    def outcome(self) -> str:
        """"no verdict" (the metric does not rank), "no interval", "n.s." (the interval includes 0), "lower" or
        "higher" (it excludes 0, on that side)."""
        if not self.metric_ranks:
            return "no verdict"
        if not np.isfinite(self.difference.low):
            return "no interval"
        if not self.difference.excludes_zero:
            return "n.s."
        return "lower" if self.difference.high < 0 else "higher"

    @property
    def verdict(self) -> str:
        outcome = self.outcome
        if outcome == "no verdict":
            return "no verdict (the metric does not rank the oracle above the unguided model here)"
        if outcome == "no interval":
            return "not shown (too few resamples reach this share on both curves)"
        if outcome == "n.s.":
            return "not shown (the 95% interval of the difference includes 0)"
        return f"supported: {self.first} {outcome} (the 95% interval of the difference excludes 0)"


@dataclass
class Matched:
    """The matched-share comparison of one sampler."""

    samples: int | None
    lines: list[str]
    targets: list[float]
    skipped: dict[float, list[str]]  # candidate target -> the lines that do not bracket it
    values: dict[tuple[float, str, str], Interval]  # (target, line label, metric key) -> value at the target
    comparisons: list[Comparison]
    oracle_share: Interval | None


def _curve_draws(points: list[PointStats], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(shares ``[R, P]``, metric ``[R, P]``) of a line's points, on the rows every point has."""
    if key == KL_KEY:
        metric = [p.kl_draws for p in points]
    elif all(key in p.quality_draws for p in points):
        metric = [p.quality_draws[key] for p in points]
    else:
        return None
    rows = min(len(m) for m in metric)
    return (np.stack([p.share_draws[:rows] for p in points], 1), np.stack([m[:rows] for m in metric], 1))


def _point_values(points: list[PointStats], key: str) -> np.ndarray | None:
    if key == KL_KEY:
        return np.array([p.kl.value for p in points])
    if all(key in p.quality for p in points):
        return np.array([p.quality[key].value for p in points])
    return None


def matched_share(rows: list[dict], stats: dict[str, PointStats], keys: list[str],
                  checks: list[QualityCheck]) -> Matched:
    """The matched-share table of one sampler's rows (see the module docstring)."""
    samples = max((stats[r["name"]].samples for r in rows), default=None)
    decisive = [r for r in rows if stats[r["name"]].samples == samples]
    lines = {line: [stats[r["name"]] for r in pts] for line, pts in method_lines(decisive).items() if len(pts) >= 2}
    oracle = next((stats[r["name"]].share for r in decisive if r["method"] == "oracle"), None)
    targets, skipped = [], {}
    for target in TARGET_SHARES:
        missing = [line.label for line, pts in lines.items()
                   if not np.isfinite(at_share(np.array([p.share.value for p in pts]), np.zeros(len(pts)), target))]
        if lines and not missing:
            targets.append(target)
        else:
            skipped[target] = missing
    ranking = {c.key: c.ranks for c in checks}
    values, draws = {}, {}
    for target in targets:
        for line, pts in lines.items():
            shares = np.array([p.share.value for p in pts])
            for key in [KL_KEY, *keys]:
                point = _point_values(pts, key)
                if point is None:
                    continue
                curve = _curve_draws(pts, key)
                resampled = at_share(*curve, target) if curve is not None else np.full(0, np.nan)
                value = float(at_share(shares, point, target))
                values[(target, line.label, key)] = (Interval.of(value, resampled) if len(resampled)
                                                     else Interval(value, float("nan"), float("nan"), 0))
                draws[(target, line.label, key)] = resampled
    comparisons = []
    for target in targets:
        for first in (line for line in lines if line.method == "dng"):
            others = [line for line in lines if line.method in ("np", "sld")
                      or (line.method == "np-schedule" and line.p_max == first.p_max)]
            for second in others:
                for key in [KL_KEY, *keys]:
                    a, b = (values.get((target, line.label, key)) for line in (first, second))
                    if a is None or b is None:
                        continue
                    da, db = draws[(target, first.label, key)], draws[(target, second.label, key)]
                    rows_ = min(len(da), len(db))
                    with np.errstate(invalid="ignore"):  # undefined draws (inf - inf) count as missing
                        diff = (Interval.of(a.value - b.value, da[:rows_] - db[:rows_]) if rows_
                                else Interval(a.value - b.value, float("nan"), float("nan"), 0))
                    comparisons.append(Comparison(first.label, second.label, key, target, diff,
                                                  key == KL_KEY or ranking.get(key, False)))
    return Matched(samples, [line.label for line in lines], targets, skipped, values, comparisons, oracle)

