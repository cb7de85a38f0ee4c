"""The lambda(t) / p(t) plot appended to the outputs (PIL only, so it needs nothing the WebUI lacks)."""

from __future__ import annotations

COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]


def _panel(draw, box, series, title, y_max, font):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0), font=font)
    draw.text((x0 - 36, y0 - 4), f"{y_max:.3g}", fill=(0, 0, 0), font=font)
    draw.text((x0 - 36, y1 - 8), "0", fill=(0, 0, 0), font=font)
    n = max((len(s) for _, s in series), default=0)
    if n < 1:
        return
    for k, (label, ys) in enumerate(series):
        col = COLORS[k % len(COLORS)]
        pts = []
        for i, y in enumerate(ys):
            px = x0 + (x1 - x0) * (i / max(n - 1, 1))
            py = y1 - (y1 - y0) * (min(max(y, 0.0), y_max) / y_max if y_max > 0 else 0)
            pts.append((px, py))
        if len(pts) > 1:
            draw.line(pts, fill=col, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=col)
        draw.text((x1 - 90, y0 + 4 + 12 * k), label, fill=col, font=font)


def plot_passes(passes, width: int = 640):
    """One row per DNG pass (batch iteration / hires pass): p(t) left, lambda(t) right, a line per image."""
    from PIL import Image, ImageDraw, ImageFont

    rows = []
    for sp in passes:
        steps = [r for r in sp.run.records if "p" in r]
        if steps:
            rows.append((sp, steps))
    if not rows:
        return None
    row_h = 200
    img = Image.new("RGB", (width, 30 + row_h * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 6), "negguide DNG: posterior p(t) and guidance scale lambda(t) per step", fill=(0, 0, 0),
              font=font)
    half = width // 2
    for k, (sp, steps) in enumerate(rows):
        top = 30 + row_h * k + 20
        n_img = len(steps[0]["p"])
        ps = [(f"img {i}", [s["p"][i] for s in steps]) for i in range(n_img)]
        ls = [(f"img {i}", [s["lambda"][i] for s in steps]) for i in range(n_img)]
        lam_max = max((max(v) for _, v in ls), default=1.0) or 1.0
        tag = ("hires" if sp.is_hr else "pass 1") + f", batch {sp.batch_number + 1}, {sp.run.tracker_name()}"
        p_max = min(1.0, max(0.02, 1.1 * max((max(v) for _, v in ps), default=1.0)))
        _panel(draw, (44, top, half - 10, top + row_h - 50), ps, f"p(t)  [{tag}]", p_max, font)
        _panel(draw, (half + 40, top, width - 10, top + row_h - 50), ls, "lambda(t)", lam_max, font)
        draw.text((44, top + row_h - 46), f"step 1 .. {len(steps)};  UNet rows per image and step beyond CFG's 2: "
                  f"{sp.run.average_extra_rows():.2f}", fill=(0, 0, 0), font=font)
    return img
