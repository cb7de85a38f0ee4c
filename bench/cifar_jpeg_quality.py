"""How much accuracy does JPEG cost? Re-encode the project's CIFAR-10 copy at a lower quality, for --data-dir.

The offline copy is JPEG quality 75 with 4:2:0 chroma, and no lossless CIFAR-10 is reachable here, so the cost of
that first compression cannot be measured directly. Its slope can: train the same classifier on copies compressed
further and compare (docs/training.md, "CIFAR-10 classifier and JPEG").

    python bench/cifar_jpeg_quality.py --quality 50 --out /tmp/cifar-q50
    python -m train classifier --dataset cifar10 --data-dir /tmp/cifar-q50 --output-dir runs/classifier-q50
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from train.paths import shared_root

SOURCE = shared_root() / "datasets" / "cifar10" / "cifar10_jpeg.npz"


def reencode(blob: np.ndarray, offsets: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    files, new_offsets = [], [0]
    for start, end in zip(offsets[:-1], offsets[1:], strict=True):
        image = Image.open(io.BytesIO(blob[start:end].tobytes())).convert("RGB")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality, subsampling=2)  # 2 = 4:2:0, as the source
        files.append(out.getvalue())
        new_offsets.append(new_offsets[-1] + len(files[-1]))
    return np.frombuffer(b"".join(files), np.uint8), np.array(new_offsets, np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, required=True, help="JPEG quality, 1..95")
    parser.add_argument("--out", type=Path, required=True, help="folder for cifar10_jpeg.npz")
    parser.add_argument("--source", type=Path, default=SOURCE)
    args = parser.parse_args()
    if not 1 <= args.quality <= 95:
        parser.error(f"--quality must be in 1..95, got {args.quality}")
    if not args.source.is_file():
        parser.error(f"{args.source} not found (see ../shared/datasets/cifar10/README.md)")
    with np.load(args.source) as source:
        arrays = {key: source[key] for key in source.files}
    for split in ("train", "test"):
        before = np.diff(arrays[f"{split}_offsets"]).mean()
        arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"] = reencode(
            arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"], args.quality
        )
        after = np.diff(arrays[f"{split}_offsets"]).mean()
        print(f"{split}: {before:.0f} -> {after:.0f} bytes per image (quality {args.quality})")
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "cifar10_jpeg.npz", **arrays)


if __name__ == "__main__":
    main()
