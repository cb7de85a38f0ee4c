"""The per-step picture of guided passes, drawn with PIL (the WebUIs and ComfyUI ship Pillow; matplotlib may be
absent there; PIL is imported when a picture is drawn).

One block per pass: DNG's posterior p(t) and scale lambda(t), a line per image; for every other mode a strip of
the steps where the negative prompt acted (a window) and the noise level of each step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127)]
INK, GRID, ACTIVE, IDLE = (20, 20, 20), (200, 200, 200), (214, 39, 40), (225, 225, 225)
TITLE_H, BLOCK_H, MARGIN = 26, 210, 48


@dataclass(frozen=True)
class PlottedPass:
    """One block: its caption, a :attr:`negguide.run.GuidanceRun.records` list, the batch size, and whether the
    records carry DNG's posterior (panels of p and lambda; else the window strip)."""

    caption: str
    records: list[dict]
    batch_size: int
    dng: bool


def draw_passes(passes: Sequence[PlottedPass], width: int = 768,
                title: str = "negguide: per-step guidance of the latest prompt",
                empty: str = "no guided pass has finished yet"):
    """A PIL image: a title line, then one block per pass (``empty`` when there is none)."""
    from PIL import Image, ImageDraw, ImageFont

    height = TITLE_H + BLOCK_H * max(len(passes), 1)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    pen.text((8, 7), title, fill=INK, font=font)
    if not passes:
        pen.text((8, TITLE_H + 8), empty, fill=INK, font=font)
    for i, shown in enumerate(passes):
        top = TITLE_H + BLOCK_H * i
        pen.line([(0, top), (width, top)], fill=GRID)
        pen.text((8, top + 6), f"pass {i + 1}: {shown.caption}", fill=INK, font=font)
        box = (MARGIN, top + 34, width - 12, top + BLOCK_H - 24)
        if shown.dng:
            _dng_panels(pen, box, shown, font)
        else:
            _window_strip(pen, box, shown, font)
    return image


def _dng_panels(pen, box, shown: PlottedPass, font) -> None:
    x0, y0, x1, y1 = box
    steps = [r for r in shown.records if "p" in r]
    half = (x1 - x0) // 2
    p_series = [[s["p"][k] for s in steps] for k in range(shown.batch_size)]
    lam_series = [[s["lambda"][k] for s in steps] for k in range(shown.batch_size)]
    p_top = min(1.0, max(0.02, 1.1 * max((max(v) for v in p_series if v), default=0.0)))
    lam_top = max((max(v) for v in lam_series if v), default=0.0) or 1.0
    _panel(pen, (x0, y0, x0 + half - 30, y1), p_series, "posterior p(t)", p_top, font)
    _panel(pen, (x0 + half + 20, y0, x1, y1), lam_series, "lambda(t)", lam_top, font)
    pen.text((x0, y1 + 4), f"steps with an update 1..{len(steps)}; a line per image", fill=INK, font=font)


def _panel(pen, box, series: list[list[float]], title: str, top: float, font) -> None:
    x0, y0, x1, y1 = box
    pen.rectangle(box, outline=INK)
    pen.text((x0 + 4, y0 - 13), title, fill=INK, font=font)
    pen.text((x0 - 40, y0 - 4), f"{top:.3g}", fill=INK, font=font)
    pen.text((x0 - 14, y1 - 10), "0", fill=INK, font=font)
    n = max((len(s) for s in series), default=0)
    for k, values in enumerate(series):
        color = COLORS[k % len(COLORS)]
        points = [(x0 + (x1 - x0) * (i / max(n - 1, 1)),
                   y1 - (y1 - y0) * (min(max(v, 0.0), top) / top if top > 0 and math.isfinite(v) else 1.0))
                  for i, v in enumerate(values)]
        if len(points) > 1:
            pen.line(points, fill=color, width=2)
        for px, py in points:
            pen.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        if k < 6:
            pen.text((x1 - 60, y0 + 4 + 12 * k), f"image {k}", fill=color, font=font)


def _window_strip(pen, box, shown: PlottedPass, font) -> None:
    x0, y0, x1, y1 = box
    records = shown.records
    n = max(len(records), 1)
    cell = (x1 - x0) / n
    strip_bottom = y0 + 40
    pen.text((x0, y0 - 13), "negative prompt active (red) per step", fill=INK, font=font)
    for i, r in enumerate(records):
        left = x0 + cell * i
        pen.rectangle([left + 1, y0, left + cell - 1, strip_bottom], fill=ACTIVE if r["negative_active"] else IDLE)
        if n <= 40 or i % math.ceil(n / 40) == 0:
            pen.text((left + 2, strip_bottom + 3), str(r["step"] + 1), fill=INK, font=font)
    sigmas = [r["sigma"] for r in records]
    finite = [s for s in sigmas if math.isfinite(s) and s > 0]
    if finite:
        lo, hi = math.log(min(finite)), math.log(max(finite))
        span = (hi - lo) or 1.0
        top, bottom = strip_bottom + 24, y1
        pen.text((x0, top - 2), f"sigma {max(finite):.3g} .. {min(finite):.3g} (log scale)", fill=INK, font=font)
        points = [(x0 + cell * (i + 0.5), bottom - (bottom - top - 12) * ((math.log(s) - lo) / span if s > 0 and
                   math.isfinite(s) else 1.0)) for i, s in enumerate(sigmas)]
        if len(points) > 1:
            pen.line(points, fill=COLORS[0], width=2)
