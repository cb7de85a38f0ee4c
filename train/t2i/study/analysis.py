"""The study's numbers from its cells: per-method rates with intervals, the critical-step measurements, the
window-start sweep, DNP against CFG. Pure functions of cells and detections (the report formats them).
"""

from __future__ import annotations

import numpy as np
import torch

from train.t2i.adherence import RATES, score
from train.t2i.evaluate import spec_scenes
from train.t2i.scenes import Scenes, render, to_unit
from train.t2i.stats import cluster_bootstrap
from train.t2i.study.measure import outcomes, rate, ssim

DETECT_THRESHOLD = 0.5  # the detector's presence probability that counts as "the object is there"
EFFECT_MARGIN = 0.2  # presence this far below the run without the negative: the negative acts on the object


def _bootstrap_mean(values: np.ndarray, clusters: np.ndarray) -> dict:
    finite = np.isfinite(values)
    r = cluster_bootstrap(values[finite], np.ones(finite.sum()), clusters[finite])
    return {"value": r.value, "ci95": [r.low, r.high], "n": int(finite.sum()), "clusters": r.clusters}


def _clusters(n_images: int, seeds: int) -> np.ndarray:
    return np.arange(n_images) // seeds


def removal_table(study, cases, cells: dict, reference: str = "none") -> dict:
    """Per method: removal, preservation, both, exact match with what should remain, SSIM to the reference
    method's image of the same seed, and the detector-feature FID to renders of what should remain."""
    seeds = study.size.seeds
    table = {}
    kept_features = _kept_render_features(study, cases, seeds)
    for name, cell in cells.items():
        found = study.detector.detect(to_unit(cell.images))
        outs = outcomes(cases, seeds, found)
        row = {
            "removed": rate([o.removed for o in outs], seeds).as_dict(),
            "preserved": rate([o.preserved for o in outs], seeds).as_dict(),
            "removed_and_preserved": rate([o.removed and o.preserved for o in outs], seeds).as_dict(),
            "kept_exact": rate([o.kept_exact for o in outs], seeds).as_dict(),
        }
        values = ssim(cell.images, cells[reference].images).numpy()
        row["ssim_to_" + reference] = _bootstrap_mean(values, _clusters(len(values), seeds))
        row["fid_to_kept"] = _fid(study.detector.features(to_unit(cell.images)), kept_features[0])
        row["seconds"] = cell.info.get("seconds")
        table[name] = row
    table["_floor"] = {"fid_to_kept": _fid(kept_features[1], kept_features[0])}
    return table


def _kept_render_features(study, cases, seeds: int, seed: int = 11):
    """Detector features of two independent render sets of what should remain (the reference and its floor)."""
    g = torch.Generator().manual_seed(seed)
    sets = [Scenes.cat([spec_scenes(c.kept(), seeds, g) for c in cases]) for _ in range(2)]
    return [study.detector.features(to_unit(render(s))) for s in sets]


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    from train.removal.fid import FeatureStats, frechet_distance

    return frechet_distance(FeatureStats.from_features(a), FeatureStats.from_features(b))


def first_stable(mask: np.ndarray) -> np.ndarray:
    """Per row, the first index from which ``mask`` holds to the end (NaN if it never does): [N, T] -> [N]."""
    stays = np.flip(np.logical_and.accumulate(np.flip(mask, axis=1), axis=1), axis=1)
    first = np.where(stays.any(axis=1), stays.argmax(axis=1), -1).astype(float)
    first[first < 0] = np.nan
    return first


def critical_steps(study, none_cell, np_cell, kind: str) -> dict:
    """Section a for one kind of negative: r_t per step (mean and interval), the target's presence in the x0
    estimate without and with the negative, the step it becomes detectable (no negative), the step the
    negative's effect on it starts (presence EFFECT_MARGIN below the no-negative run's from there on), and r_t's
    peak step (Ban's critical step for nouns)."""
    seeds = study.size.seeds
    channel = 0 if kind == "object" else 1  # object presence, or the probability of the negated texture
    base = none_cell.traces["x0"][..., channel].numpy()
    guided = np_cell.traces["x0"][..., channel].numpy()
    r_t = np_cell.traces["attention"].numpy()
    clusters = _clusters(len(base), seeds)
    detectable = first_stable(base >= DETECT_THRESHOLD)
    effect = first_stable(guided <= base - EFFECT_MARGIN)
    peak = np.where(np.isfinite(r_t).any(axis=1), np.nanargmax(np.nan_to_num(r_t, nan=-np.inf), axis=1), np.nan)
    per_step = {
        "r_t": [_bootstrap_mean(r_t[:, k], clusters) for k in range(r_t.shape[1])],
        "presence_none": [_bootstrap_mean(base[:, k], clusters) for k in range(base.shape[1])],
        "presence_np": [_bootstrap_mean(guided[:, k], clusters) for k in range(guided.shape[1])],
    }
    steps = {"detectable_without_negative": detectable, "negative_effect_starts": effect, "r_t_peak": peak}
    summary = {name: _median_interval(values + 1, clusters) for name, values in steps.items()}  # 1-based steps
    both = np.isfinite(detectable) & np.isfinite(effect)
    summary["effect_minus_detectable"] = _median_interval((effect - detectable)[both], clusters[both])
    return {"per_step": per_step, "summary": summary, "images": len(base)}


def _median_interval(values: np.ndarray, clusters: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    finite = np.isfinite(values)
    values, clusters = values[finite], clusters[finite]
    if len(values) == 0:
        return {"median": None, "ci95": [None, None], "n": 0}
    ids = np.unique(clusters)
    groups = [values[clusters == c] for c in ids]
    rng = np.random.default_rng(seed)
    medians = [np.median(np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))]))
               for _ in range(resamples)]
    low, high = np.quantile(medians, [0.025, 0.975])
    return {"median": float(np.median(values)), "ci95": [float(low), float(high)], "n": int(len(values)),
            "clusters": len(ids)}


def window_sweep(study, cases, grid: dict) -> dict:
    """Ban's Fig. 9: per start step, the shortest window (in steps) that removes the object, per image; its
    median with a case-clustered interval, and the share of images some window from that start removes."""
    seeds = study.size.seeds
    removed = {}
    for (start, length), cell in grid.items():
        outs = outcomes(cases, seeds, study.detector.detect(to_unit(cell.images)))
        removed[(start, length)] = np.array([o.removed for o in outs])
    starts = sorted({s for s, _ in removed})
    rows = {}
    clusters = _clusters(len(next(iter(removed.values()))), seeds)
    for start in starts:
        lengths = sorted(length for s, length in removed if s == start)
        needed = np.full(len(clusters), np.nan)
        for length in reversed(lengths):  # the shortest length that removes wins
            needed = np.where(removed[(start, length)], length, needed)
        rows[start] = {"lengths": lengths, "needed": _median_interval(needed, clusters),
                       "removable": rate(np.isfinite(needed), seeds).as_dict()}
    return rows


def dnp_table(study, section: dict) -> dict:
    """Section c: adherence rates per method (CFG alone, CFG + DNP, CFG + the generic negative), the paired
    difference DNP - CFG in exact match (images of the same case and seed), and detector-feature FID to renders
    of the prompts."""
    cases, seeds = section["cases"], study.size.seeds
    specs = [c.spec for c in cases]
    refs = Scenes.cat([spec_scenes(s, seeds, torch.Generator().manual_seed(12 + i)) for i, s in enumerate(specs)])
    ref_features = study.detector.features(to_unit(render(refs)))
    table, exact = {}, {}
    for name in ("cfg", "dnp", "generic", "dns"):
        cell = section[name]
        found = study.detector.detect(to_unit(cell.images))
        records = [score(specs[k // seeds], f) for k, f in enumerate(found)]
        clusters = list(_clusters(len(records), seeds))
        row = {}
        for metric, get in RATES.items():
            pairs = [get(a) for a in records]
            row[metric] = cluster_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], clusters).as_dict()
        row["fid_to_prompt_renders"] = _fid(study.detector.features(to_unit(cell.images)), ref_features)
        exact[name] = np.array([float(a.exact) for a in records])
        table[name] = row
    clusters = _clusters(len(exact["cfg"]), seeds)
    for other in ("dnp", "generic"):
        diff = exact[other] - exact["cfg"]
        table[f"{other}_minus_cfg_exact"] = _bootstrap_mean(diff, clusters)
    return table


SIGNAL_THRESHOLDS = {"alignment": tuple(np.round(np.arange(-0.2, 0.951, 0.05), 2)),
                     "gap": tuple(np.round(np.arange(0.05, 0.951, 0.05), 2)),
                     "posterior": (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.79)}
NEVER_FIRES = {"alignment": 1.0, "gap": 1e-9}  # the adaptive mode's signals, at thresholds that never fire
# A candidate the adaptive mode does not have: DNG's tracked posterior p of the negative (the third
# candidate), read from a DNG pass whose lambda0 is too small to move the images (lambda <= 4 lambda0).
POSTERIOR_PROBE_LAMBDA0 = 1e-6


def firing_steps(signal: np.ndarray, name: str, threshold: float) -> np.ndarray:
    """Per image, the first step (0-based) where the adaptive window's rule fires on the recorded signal
    ([N, steps]); ``steps`` where it never does (the negative never starts)."""
    fires = signal <= threshold if name == "gap" else signal >= threshold
    fires &= np.isfinite(signal)
    return np.where(fires.any(axis=1), fires.argmax(axis=1), signal.shape[1]).astype(float)


def signal_calibration(study, none_cell, signal_cells: dict) -> dict:
    """Which start signal and threshold put each image's start at its critical step: the step from which the
    target is detectable in the x0 estimate without a negative (section a). Per signal and threshold the mean
    |start - critical| over images whose target becomes detectable; the best threshold per signal with its
    interval, and the best constant start (a fixed window) as the baseline a signal has to beat."""
    seeds = study.size.seeds
    # both the thresholds and the constant are chosen on these images: the comparison is in-sample for both
    critical = first_stable(none_cell.traces["x0"][..., 0].numpy() >= DETECT_THRESHOLD)
    known = np.isfinite(critical)
    clusters = _clusters(len(critical), seeds)[known]
    out = {"images": int(len(critical)), "with_critical_step": int(known.sum()), "signals": {}, "chosen": None}
    if not known.any():  # no target ever drawn: nothing to calibrate against (section b uses the core default)
        return out
    target = critical[known]
    constants = {s: float(np.mean(np.abs(s - target))) for s in range(study.steps)}
    best_constant = min(constants, key=constants.get)
    constant_error = np.abs(best_constant - target)
    out["constant"] = {"start": best_constant, "mean_abs_error": _bootstrap_mean(constant_error, clusters)}
    for name, cell in signal_cells.items():
        signal = cell.traces["signal"].numpy()
        scores = {float(t): float(np.mean(np.abs(firing_steps(signal, name, t)[known] - target)))
                  for t in SIGNAL_THRESHOLDS[name]}
        best = min(scores, key=scores.get)
        start = firing_steps(signal, name, best)[known]
        error = np.abs(start - target)
        out["signals"][name] = {
            "mean_abs_error_by_threshold": scores, "threshold": best,
            "mean_abs_error": _bootstrap_mean(error, clusters),
            "minus_constant": _bootstrap_mean(error - constant_error, clusters),  # paired: the same images
            "start_minus_critical": _median_interval(start - target, clusters),
            "correlation": float(np.corrcoef(start, target)[0, 1]) if np.std(start) > 0 else None,
            "mean_signal": [float(np.nanmean(signal[:, k])) for k in range(signal.shape[1])]}
    built = [n for n in out["signals"] if n in NEVER_FIRES]  # the signals the adaptive mode can use
    out["chosen"] = min(built, key=lambda n: out["signals"][n]["mean_abs_error"]["value"])
    return out
