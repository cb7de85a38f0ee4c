"""MNIST and CIFAR-10 as whole uint8 tensors, from torchvision or from the project's offline copies.

Both datasets are small enough to hold in memory (MNIST 47 MB, CIFAR-10 180 MB as uint8), so every source is
read once into an `ImageSet` of uint8 NCHW images + int64 labels; filtering and batching happen on tensors
(see device_loader.py). Accepted layouts of `data_dir`:

* MNIST: the four IDX files (gzipped or not) directly in `data_dir`, or torchvision's `data_dir/MNIST/raw/`.
  Their MD5s are checked against the canonical ones.
* CIFAR-10: `cifar10_jpeg.npz` (the project's offline JPEG copy, see ../shared/datasets/cifar10/README.md),
  or torchvision's `data_dir/cifar-10-batches-py/` (its own MD5 check applies).

With `download=True`, torchvision fetches the official files into `data_dir` first.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from train.errors import UsageError
from train.paths import shared_root

DATASETS = ("mnist", "cifar10")
IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # (channels, height, width) of each dataset
MNIST_CLASSES = [str(d) for d in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Canonical MD5 of the uncompressed IDX files (the same ones torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
CIFAR_NPZ = "cifar10_jpeg.npz"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ImageSet:
    """uint8 images (N, C, H, W), int64 labels (N,), and the class names of the whole dataset."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def shared_data_dir(dataset: str) -> Path:
    """Where the build machines keep an offline copy (`../shared/datasets/<name>` beside the checkout, or under
    `$NEGGUIDE_SHARED`)."""
    return shared_root() / "datasets" / dataset


def how_to_get(dataset: str) -> str:
    return (
        f"Get {dataset} with `--download --data-dir DIR` (torchvision fetches the official files into DIR), "
        f"or point `--data-dir` at an existing copy: "
        + (
            "a folder with the four MNIST IDX files (.gz or not) or torchvision's MNIST/raw layout."
            if dataset == "mnist"
            else f"a folder with `{CIFAR_NPZ}` or torchvision's `cifar-10-batches-py`."
        )
    )


def check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")


def check_class(dataset: str, k: int | None, what: str = "class") -> None:
    if k is not None and not 0 <= k < 10:
        raise UsageError(f"{what} {k} does not exist in {dataset}: classes are 0..9")


def resolve_data_dir(dataset: str, data_dir: str | Path | None, download: bool) -> Path:
    """The folder to read: the one given, else ./data when downloading, else the offline shared copy."""
    check_dataset(dataset)
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise UsageError(f"data directory {path} is a file, not a folder. {how_to_get(dataset)}")
        if not download and not path.is_dir():
            raise UsageError(f"data directory {path} does not exist. {how_to_get(dataset)}")
        return path
    if download:
        return Path("data")
    shared = shared_data_dir(dataset)
    if shared.is_dir():
        return shared
    raise UsageError(f"no data directory given and no offline copy at {shared}. {how_to_get(dataset)}")


def load_dataset(
    dataset: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = False,
    only_class: int | None = None,
    drop_class: int | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Read one split, keep only / drop one class, then a fixed pseudo-random subset of `limit` images."""
    check_dataset(dataset)
    if split not in ("train", "test"):
        raise UsageError(f"unknown split {split!r}: 'train' or 'test'")
    check_class(dataset, only_class, "--only-class")
    check_class(dataset, drop_class, "--drop-class")
    if only_class is not None and drop_class is not None:
        raise UsageError("--only-class and --drop-class exclude each other")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    root = resolve_data_dir(dataset, data_dir, download)
    if dataset == "mnist":
        return _select(_load_mnist(root, split, download), only_class, drop_class, limit)
    return _load_cifar10(root, split, download, only_class, drop_class, limit)


def _selected_indices(labels: torch.Tensor, only_class, drop_class, limit) -> torch.Tensor:
    keep = torch.ones_like(labels, dtype=torch.bool)
    if only_class is not None:
        keep &= labels == only_class
    if drop_class is not None:
        keep &= labels != drop_class
    idx = keep.nonzero().flatten()
    if limit is not None and limit < len(idx):
        # A fixed pseudo-random subset, not the first N: CIFAR-10's file is sorted by class.
        pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:limit]
        idx = idx[pick.sort().values]
    return idx


def _select(data: ImageSet, only_class, drop_class, limit) -> ImageSet:
    idx = _selected_indices(data.labels, only_class, drop_class, limit)
    return ImageSet(data.images[idx], data.labels[idx], data.classes, data.name)


# ----------------------------------------------------------------------------------------------------- MNIST
def _find_idx_file(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_idx(path: Path, stem: str) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UsageError(f"{path} is not a valid gzip file ({err}); re-download it") from err
    digest = hashlib.md5(raw).hexdigest()
    if digest != MNIST_MD5[stem]:
        raise UsageError(f"{path} fails its integrity check: md5 {digest}, expected {MNIST_MD5[stem]}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_mnist(root: Path, split: str, download: bool) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if download and any(_find_idx_file(root, s) is None for s in stems):
        from torchvision.datasets import MNIST

        MNIST(str(root), train=split == "train", download=True)
    paths = [_find_idx_file(root, s) for s in stems]
    if any(p is None for p in paths):
        raise UsageError(f"MNIST {split} files not found in {root}. {how_to_get('mnist')}")
    images = _read_idx(paths[0], stems[0])
    labels = _read_idx(paths[1], stems[1])
    return ImageSet(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        MNIST_CLASSES,
        "mnist",
    )


# -------------------------------------------------------------------------------------------------- CIFAR-10
def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    from PIL import Image

    def decode(i: int) -> np.ndarray:
        with Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())) as im:
            return np.asarray(im.convert("RGB"))

    if len(indices) == 0:
        return np.zeros((0, 32, 32, 3), np.uint8)
    # PIL releases the GIL while decoding, so threads speed up the ~14 s full decode.
    with ThreadPoolExecutor(max_workers=8) as pool:
        return np.stack(list(pool.map(decode, indices.tolist(), chunksize=512)))


def _load_cifar10(root: Path, split: str, download: bool, only_class, drop_class, limit) -> ImageSet:
    npz = root / CIFAR_NPZ
    if npz.is_file():
        try:
            with np.load(npz) as f:
                blob, offsets = f[f"{split}_jpeg"], f[f"{split}_offsets"]
                labels = torch.from_numpy(f[f"{split}_labels"].astype(np.int64))
        except (OSError, KeyError, ValueError) as err:
            raise UsageError(f"{npz} is unreadable or incomplete ({err}); fetch it again") from err
        if len(offsets) != len(labels) + 1 or offsets[-1] != len(blob):
            raise UsageError(f"{npz} fails its integrity check (offsets do not match the JPEG bytes)")
        # Decode only the images that survive the filters: tests read small slices in milliseconds.
        idx = _selected_indices(labels, only_class, drop_class, limit)
        images = _decode_jpegs(blob, offsets, idx.numpy())
        return ImageSet(
            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels[idx], CIFAR10_CLASSES, "cifar10"
        )
    if download or (root / "cifar-10-batches-py").is_dir():
        from torchvision.datasets import CIFAR10

        try:
            ds = CIFAR10(str(root), train=split == "train", download=download)
        except RuntimeError as err:
            raise UsageError(
                f"CIFAR-10 in {root} is missing or corrupt ({err}). {how_to_get('cifar10')}"
            ) from err
        data = ImageSet(
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(ds.targets, dtype=torch.int64),
            CIFAR10_CLASSES,
            "cifar10",
        )
        return _select(data, only_class, drop_class, limit)
    raise UsageError(f"CIFAR-10 not found in {root}. {how_to_get('cifar10')}")
