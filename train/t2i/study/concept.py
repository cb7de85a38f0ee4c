"""Section d: DNG on prompts (Koulischer et al.'s text-to-image claim: more accurate and less invasive than NP).

The forbidden concept "red shape" is kept out of prompts that do not name it ("three shapes on vertical stripes")
and prompts that do ("a red circle and a blue square"). Each method runs at a few strengths on the same noise:
NP as constant negative guidance ``E + w (P - E) - lambda (N - P)`` (``np_lambda``, lambda the strength), SLD
(its scale s_s) and DNG (lambda0). Every method's curve starts at the common no-negative point, and methods are
compared at *matched* red share (the share of images the detector finds a red object in), their other metrics
interpolated along each curve (:func:`train.removal.paired.at_share`), never at the luckiest point:

* ``preserved``: the prompt's other content kept (unnamed prompts: as many objects as asked and the background;
  named prompts: the non-red object and the background);
* ``ssim``: SSIM to the same seed's image without a negative (how invasive the guidance is);
* ``kl_colour`` / ``kl_shape`` (unnamed prompts): KL(uniform over the kept colours || the detected non-red
  objects' colours) and KL(uniform over shapes || their shapes): the diversity of the MNIST study's class-balance
  KL, over colours and shapes.

Intervals: a bootstrap over prompts (clusters), the same prompt draws for every point, so that differences
between methods at the same red share are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.removal.paired import Interval, at_share, kl_from_counts
from train.t2i.scenes import COLOURS, SHAPES, to_unit
from train.t2i.study.cells import Method
from train.t2i.study.measure import outcomes, ssim

STRENGTHS = {  # per method, increasing; the no-negative run is every curve's first point
    "np": ("negative_scale", (0.5, 1.0, 2.0, 4.0)),
    "sld": ("s_s", (50.0, 200.0, 1000.0, 4000.0)),
    "dng": ("lambda0", (2.0, 5.0, 10.0, 20.0)),
}
MATCHED_RED_SHARES = {"concept-unnamed": (0.2, 0.1, 0.05), "concept-named": (0.5, 0.3, 0.1)}
RESAMPLES = 2000
KEPT_COLOURS = tuple(c for c in COLOURS if c != "red")


def strength_method(method: str, strength: float) -> Method:
    if method == "np":
        return Method(f"np {strength:g}", {"mode": "np_lambda", "negative_scale": strength})
    if method == "sld":
        return Method(f"sld {strength:g}", {"mode": "sld", "sld": {"s_s": strength}})
    if method == "dng":
        return Method(f"dng {strength:g}", {"mode": "dng", "dng": {"lambda0": strength}})
    raise ValueError(f"no strength sweep for method {method!r}")


def concept_cells(study, cases) -> dict:
    """The no-negative cell and, per method, its cells by strength (reused where finished)."""
    cells = {"none": study.cell("d-none", Method("none", {"mode": "off"}, negative=False), cases)}
    for method, (_, strengths) in STRENGTHS.items():
        cells[method] = [(s, study.cell(f"d-{method}-{s:g}", strength_method(method, s), cases)) for s in strengths]
    return cells


@dataclass(frozen=True)
class ImageReadings:
    """Per image of one cell: red found, content preserved, SSIM to no negative, and the non-red objects'
    colour and shape counts."""

    red: np.ndarray  # [N] float 0/1
    preserved: np.ndarray
    ssim: np.ndarray
    colours: np.ndarray  # [N, len(KEPT_COLOURS)]
    shapes: np.ndarray  # [N, len(SHAPES)]


def readings(study, cases, cell, reference) -> ImageReadings:
    found = study.detector.detect(to_unit(cell.images))
    outs = outcomes(cases, study.size.seeds, found)
    colours = np.zeros((len(found), len(KEPT_COLOURS)))
    shapes = np.zeros((len(found), len(SHAPES)))
    for k, f in enumerate(found):
        for o in f["objects"]:
            if o["colour"] != "red":
                colours[k, KEPT_COLOURS.index(o["colour"])] += 1
                shapes[k, SHAPES.index(o["shape"])] += 1
    return ImageReadings(np.array([not o.removed for o in outs], dtype=float),
                         np.array([o.preserved for o in outs], dtype=float),
                         ssim(cell.images, reference.images).double().numpy(), colours, shapes)


def cluster_weights(n_images: int, seeds: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[1 + R, N]`` image weights: row 0 all ones (the point estimate), then how often each image's prompt was
    drawn in each of R bootstrap draws over prompts."""
    prompts = n_images // seeds
    draws = np.random.default_rng(seed).integers(0, prompts, size=(resamples, prompts))
    per_prompt = np.stack([np.bincount(d, minlength=prompts) for d in draws])
    return np.vstack([np.ones((1, n_images)), np.repeat(per_prompt, seeds, axis=1)])


def metrics(r: ImageReadings, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of one cell under each weight row: ``[1 + R]`` arrays."""
    total = weights.sum(1)
    out = {"red_share": weights @ r.red / total, "preserved": weights @ r.preserved / total,
           "ssim": weights @ r.ssim / total}
    out["kl_colour"] = kl_from_counts(np.full(len(KEPT_COLOURS), 1 / len(KEPT_COLOURS)), weights @ r.colours)
    out["kl_shape"] = kl_from_counts(np.full(len(SHAPES), 1 / len(SHAPES)), weights @ r.shapes)
    return out


METRICS = ("preserved", "ssim", "kl_colour", "kl_shape")


def concept_table(study, cases, cells: dict) -> dict:
    """Section d per prompt kind: every point with intervals, each method's metrics at the matched red shares,
    and the paired differences DNG - NP and DNG - SLD there."""
    seeds = study.size.seeds
    result = {}
    for kind in ("concept-unnamed", "concept-named"):
        picked = [i for i, c in enumerate(cases) if c.kind == kind]
        if not picked:
            continue
        rows = np.concatenate([np.arange(i * seeds, (i + 1) * seeds) for i in picked])
        sub = [cases[i] for i in picked]
        weights = cluster_weights(len(rows), seeds)

        def of(cell, rows=rows, sub=sub, weights=weights):
            return metrics(readings(study, sub, _rows(cell, rows), _rows(cells["none"], rows)), weights)

        base = of(cells["none"])
        curves = {m: [base] + [of(cell) for _, cell in cells[m]] for m in STRENGTHS}
        points = {"none": _intervals(base)}
        for m, (knob, strengths) in STRENGTHS.items():
            points[m] = [{knob: s, **_intervals(v)} for s, v in zip(strengths, curves[m][1:], strict=True)]
        matched = {}
        for target in MATCHED_RED_SHARES[kind]:
            at = {m: {k: at_share(np.stack([p["red_share"] for p in curve], -1),
                                  np.stack([p[k] for p in curve], -1), target) for k in METRICS}
                  for m, curve in curves.items()}
            row = {m: {k: Interval.of(v[0], v[1:]).as_dict() for k, v in values.items()} for m, values in at.items()}
            for other in ("np", "sld"):
                row[f"dng_minus_{other}"] = {k: Interval.of(at["dng"][k][0] - at[other][k][0],
                                                            at["dng"][k][1:] - at[other][k][1:]).as_dict()
                                             for k in METRICS}
            matched[f"{target:g}"] = row
        result[kind] = {"prompts": len(picked), "images": len(rows), "points": points, "matched": matched}
    return result


def _rows(cell, rows: np.ndarray):
    from dataclasses import replace

    return replace(cell, images=cell.images[rows])


def _intervals(values: dict[str, np.ndarray]) -> dict:
    return {k: Interval.of(v[0], v[1:]).as_dict() for k, v in values.items()}
