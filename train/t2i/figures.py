"""The testbed's figures: sample scenes with their captions, and one prompt under every negguide mode.

Images are 32x32; figures enlarge them with nearest-neighbour sampling (each pixel a block), never smoothing.
"""

from __future__ import annotations

import textwrap

import torch
from PIL import Image, ImageDraw

from train.t2i.captions import captions_for
from train.t2i.scenes import render, sample_scenes

SCALE = 4  # 32 px -> 128 px


def _tile(images: torch.Tensor) -> list[Image.Image]:
    """uint8 (N, 3, 32, 32) -> enlarged PIL tiles."""
    arrays = images.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a).resize((a.shape[1] * SCALE, a.shape[0] * SCALE), Image.NEAREST) for a in arrays]


def scenes_figure(n: int = 12, seed: int = 0, columns: int = 6) -> Image.Image:
    """n scenes of the training distribution, each with one of its captions underneath."""
    scenes = sample_scenes(torch.Generator().manual_seed(seed), n)
    tiles, captions = _tile(render(scenes)), captions_for(scenes, seed)
    side, text_h, pad = 32 * SCALE, 64, 6
    rows = -(-n // columns)
    sheet = Image.new("RGB", (columns * (side + pad) + pad, rows * (side + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        r, c = divmod(i, columns)
        x, y = pad + c * (side + pad), pad + r * (side + text_h + pad)
        sheet.paste(tile, (x, y))
        draw.multiline_text((x, y + side + 2), "\n".join(textwrap.wrap(caption, 24)[:5]), fill="black", spacing=1)
    return sheet


def modes_figure(rows: list[tuple[str, torch.Tensor]], title: str) -> Image.Image:
    """One row per (label, uint8 images) pair, the same seeds in every row's columns, a title line on top."""
    side, label_w, pad, title_h = 32 * SCALE, 150, 4, 24
    columns = max(len(images) for _, images in rows)
    sheet = Image.new("RGB", (label_w + columns * (side + pad) + pad, title_h + len(rows) * (side + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 6), title, fill="black")
    for r, (label, images) in enumerate(rows):
        y = title_h + r * (side + pad)
        draw.multiline_text((pad, y + side // 2 - 14), "\n".join(textwrap.wrap(label, 22)), fill="black")
        for c, tile in enumerate(_tile(images)):
            sheet.paste(tile, (label_w + c * (side + pad), y))
    return sheet
