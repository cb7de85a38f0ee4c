"""The two Script-dropdown workflows, independent of the WebUI's import paths.

Both drive the always-on panel through ``p.negguide_overrides`` (the same hook the XYZ grid uses), so the
sampling itself is exactly the panel's; ``process_images`` and the captioner are passed in.

* :func:`run_dnp`: diffusion-negative prompting (Desai & Vasconcelos 2024, Sec. 4): with the same seed,
  sample the DNS image (Eq. 19 with scale s, realised as CFG s + 1 with the prompts swapped), caption it,
  then generate with the caption added to the negative prompt. The manual mode stops after the DNS images.
* :func:`run_sweep`: Ban et al.'s timing study (Fig. 2/9) on the user's prompt: a labelled grid of the
  negative prompt applied over windows ``start x length``, with the "no negative" and "whole run"
  references; a window over the first steps only shows the "reverse activation".
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from .extension import OVERRIDE_ATTR
from .settings import MODE_DNS, MODE_OFF, MODE_WINDOWED, UNIT_STEPS

DNP_AUTO = "Automatic: caption the DNS image"
DNP_MANUAL_STOP = "Manual: only make the DNS images"
DNP_MANUAL_CAPTION = "Manual: use my caption"
DNP_MODES = (DNP_AUTO, DNP_MANUAL_STOP, DNP_MANUAL_CAPTION)

CAPTIONERS: dict[str, Callable] = {}


def register_captioner(name: str, fn: Callable) -> None:
    """Add a captioner ``fn(pil_image) -> str`` to the DNP script's choices (other extensions may call this)."""
    CAPTIONERS[name] = fn


def blip_caption(image) -> str:
    """The WebUI's own BLIP interrogator (A1111 ``modules/interrogate.py``), caption part only."""
    from modules import devices, shared

    ic = shared.interrogator
    ic.load()
    try:
        with devices.autocast():
            return ic.generate_caption(image.convert("RGB"))
    finally:
        ic.unload()


register_captioner("BLIP (WebUI interrogator)", blip_caption)


def _copy(p, overrides: dict):
    q = copy.copy(p)
    q.extra_generation_params = dict(getattr(p, "extra_generation_params", {}) or {})
    setattr(q, OVERRIDE_ATTR, {**(getattr(p, OVERRIDE_ATTR, None) or {}), **overrides})
    return q


def _per_image(v, n: int) -> list:
    return list(v) if isinstance(v, list) else [v] * n


def dns_pass(p, scale: float, process_images):
    """The DNS images for ``p``'s prompts and seeds: prompts swapped, CFG scale ``scale + 1``."""
    q = _copy(p, {"mode": MODE_DNS})
    q.cfg_scale = float(scale) + 1.0
    q.extra_generation_params["DNS scale"] = f"{float(scale):g}"
    return process_images(q)


def run_dnp(
    p, scale: float, mode: str, caption_text: str, captioner: str, process_images, captioners: dict | None = None
):
    """Returns the final ``Processed``: DNS images first, then the final images; captions in the infotext."""
    if mode not in DNP_MODES:
        raise ValueError(f"DNP mode must be one of {DNP_MODES}, got {mode!r}")
    if not (float(scale) > 0):
        raise ValueError(f"DNS scale must be > 0, got {scale}")
    n = int(getattr(p, "batch_size", 1)) * int(getattr(p, "n_iter", 1))
    negs = _per_image(getattr(p, "negative_prompt", ""), n)
    dns = None
    if mode == DNP_MANUAL_CAPTION:
        if not caption_text.strip():
            raise ValueError("DNP: write the caption of the DNS image (or choose the automatic mode)")
        captions = [caption_text.strip()] * n
    else:
        dns = dns_pass(p, scale, process_images)
        if not dns.images:
            errs = getattr(dns, "negguide_errors", None) or ["the DNS pass produced no image"]
            raise ValueError("DNP: " + "; ".join(errs))
        if mode == DNP_MANUAL_STOP:
            return dns
        fn = (captioners or CAPTIONERS).get(captioner)
        if fn is None:
            raise ValueError(f"DNP: unknown captioner {captioner!r}; have {sorted(captioners or CAPTIONERS)}")
        images = list(dns.images)[:n]
        captions = [fn(im).strip() for im in images]
    final_negs = [f"{ng}, {c}" if ng.strip() else c for ng, c in zip(negs, captions, strict=False)]
    q = copy.copy(p)
    q.extra_generation_params = dict(getattr(p, "extra_generation_params", {}) or {})
    q.negative_prompt = final_negs if len(set(final_negs)) > 1 else final_negs[0]
    q.extra_generation_params["DNP caption"] = captions[0] if len(set(captions)) == 1 else " | ".join(captions)
    q.extra_generation_params["DNS scale"] = f"{float(scale):g}"
    final = process_images(q)
    final.dnp_captions = captions
    if dns is not None:
        final.images = list(dns.images) + list(final.images)
        final.infotexts = list(dns.infotexts) + list(final.infotexts)
    return final


def parse_int_list(text: str, what: str) -> list[int]:
    out = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    if not out or any(v < 1 for v in out):
        raise ValueError(f"Timing sweep: {what} must be whole numbers >= 1, got {text!r}")
    return out


def sweep_cells(steps: int, starts: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    """``(start, end)`` 1-based inclusive windows, the end clipped to the run; a start beyond the run is an
    error (that cell would only repeat the "no negative prompt" reference)."""
    cells = []
    for s in starts:
        for n in lengths:
            if s > steps:
                raise ValueError(f"Timing sweep: start step {s} is after the last step ({steps})")
            cells.append((s, min(steps, s + n - 1)))
    return cells


def run_sweep(p, starts_text: str, lengths_text: str, references: bool, process_images, make_grid):
    """A grid (rows: start step, columns: window length) of the first image of each generation."""
    steps = int(p.steps)
    starts = parse_int_list(starts_text, "start steps")
    lengths = parse_int_list(lengths_text, "window lengths")
    cells = sweep_cells(steps, starts, lengths)
    images, labels, infotexts = [], [], []
    if references:
        for label, ov, neg in [
            ("no negative prompt", {"mode": MODE_OFF}, ""),
            ("negative on all steps", {"mode": MODE_OFF}, None),
        ]:
            q = _copy(p, ov)
            if neg is not None:
                q.negative_prompt = neg
            res = process_images(q)
            images.append(res.images[0])
            labels.append(label)
            infotexts.append(res.infotexts[0])
    for s, e in cells:
        q = _copy(p, {"mode": MODE_WINDOWED, "window_unit": UNIT_STEPS, "window_start": s, "window_end": e})
        res = process_images(q)
        images.append(res.images[0])
        tag = " (reverse activation)" if s == 1 and e < steps else ""
        labels.append(f"steps {s}-{e}{tag}")
        infotexts.append(res.infotexts[0])
    grid = make_grid(
        images,
        labels,
        cols=len(lengths),
        header=f"negative prompt window (of {steps} steps)",
        n_ref=2 if references else 0,
    )
    return images, labels, infotexts, grid


def labelled_grid(images, labels, cols: int, header: str = "", n_ref: int = 0):
    """A plain PIL grid: the ``n_ref`` reference images in a first row, then the cells in rows of ``cols``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    w = max(im.size[0] for im in images)
    h = max(im.size[1] for im in images)
    lab = 16
    rows = [images[:n_ref]] if n_ref else []
    rlabels = [labels[:n_ref]] if n_ref else []
    for i in range(n_ref, len(images), cols):
        rows.append(images[i : i + cols])
        rlabels.append(labels[i : i + cols])
    top = 20 if header else 0
    width = max(cols, n_ref) * w
    grid = Image.new("RGB", (max(width, 200), top + len(rows) * (h + lab)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    if header:
        draw.text((4, 4), header, fill=(0, 0, 0), font=font)
    for r, (row, lr) in enumerate(zip(rows, rlabels, strict=True)):
        for c, (im, lb) in enumerate(zip(row, lr, strict=True)):
            x, y = c * w, top + r * (h + lab)
            draw.text((x + 2, y + 2), lb, fill=(0, 0, 0), font=font)
            grid.paste(im, (x, y + lab))
    return grid
