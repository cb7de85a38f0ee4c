"""Data sources, integrity checks, class filters and the device loader."""

import gzip
import shutil

import pytest
import torch

from train.data import load_dataset
from train.device_loader import DeviceBatches
from train.errors import UsageError


def test_mnist_reads_and_verifies_md5(mnist_dir):
    test = load_dataset("mnist", "test", mnist_dir)
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == torch.uint8
    # Label counts of the README of ../shared/datasets/mnist.
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_only_and_drop_class_filters(mnist_dir):
    zeros = load_dataset("mnist", "test", mnist_dir, only_class=0)
    assert len(zeros) == 980 and set(zeros.labels.tolist()) == {0}
    no_zeros = load_dataset("mnist", "test", mnist_dir, drop_class=0)
    assert len(no_zeros) == 10_000 - 980 and 0 not in set(no_zeros.labels.tolist())


def test_limit_is_a_fixed_subset_of_the_filtered_class(mnist_dir):
    a = load_dataset("mnist", "test", mnist_dir, only_class=3, limit=50)
    b = load_dataset("mnist", "test", mnist_dir, only_class=3, limit=50)
    assert len(a) == 50 and torch.equal(a.images, b.images) and set(a.labels.tolist()) == {3}


def test_cifar_jpeg_slice_decodes_only_what_is_kept(cifar_dir):
    cats = load_dataset("cifar10", "test", cifar_dir, only_class=3, limit=20)
    assert cats.images.shape == (20, 3, 32, 32) and set(cats.labels.tolist()) == {3}
    assert cats.classes[3] == "cat" and cats.images.float().std() > 20  # real pixels, not zeros
    mixed = load_dataset("cifar10", "train", cifar_dir, limit=200)
    assert len(set(mixed.labels.tolist())) == 10  # the file is class-sorted: --limit must not be "first N"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "svhn"}, "unknown dataset"),
        ({"dataset": "mnist", "only_class": 10}, "classes are 0..9"),
        ({"dataset": "mnist", "drop_class": -1}, "classes are 0..9"),
        ({"dataset": "mnist", "data_dir": "/nonexistent/mnist"}, "--download"),
        ({"dataset": "cifar10", "data_dir": "/nonexistent"}, "--download"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(UsageError, match=message.replace(".", r"\.").replace("-", r"\-")):
        load_dataset(**kwargs)


def test_empty_dir_says_how_to_get_the_data(tmp_path):
    with pytest.raises(UsageError, match="torchvision"):
        load_dataset("mnist", "train", tmp_path)


def test_corrupt_mnist_file_fails_its_md5(mnist_dir, tmp_path):
    for f in mnist_dir.glob("t10k-*.gz"):
        shutil.copy(f, tmp_path / f.name)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] ^= 1
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UsageError, match="integrity"):
        load_dataset("mnist", "test", tmp_path)


def test_device_batches_are_a_function_of_step_and_shard_by_rank():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    labels = torch.arange(40)
    a = DeviceBatches(images, labels, 4, torch.device("cpu"), seed=1, hflip=True, crop_padding=1)
    b = DeviceBatches(images, labels, 4, torch.device("cpu"), seed=1, hflip=True, crop_padding=1)
    for step in (7, 0, 3, 12):  # any order: no hidden loader state
        xa, ya = a.batch(step)
        xb, yb = b.batch(step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.min() >= -1 and xa.max() <= 1
    # One epoch visits every image once; two ranks see disjoint halves of each step's images.
    seen = torch.cat([a.batch(s)[1] for s in range(a.steps_per_epoch)])
    assert sorted(seen.tolist()) == list(range(40))
    r0 = DeviceBatches(images, labels, 4, torch.device("cpu"), seed=1, rank=0, world_size=2)
    r1 = DeviceBatches(images, labels, 4, torch.device("cpu"), seed=1, rank=1, world_size=2)
    assert not set(r0.batch(2)[1].tolist()) & set(r1.batch(2)[1].tolist())


def test_translations_pad_black_or_mirror_the_border():
    from train.device_loader import augment

    x = torch.linspace(-0.5, 0.5, 16).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    black = augment(x, g, hflip=False, crop_padding=2, pad_mode="constant")
    mirrored = augment(x, torch.Generator().manual_seed(0), hflip=False, crop_padding=2, pad_mode="reflect")
    assert (black == -1).any() and not (mirrored == -1).any()
    # Same offsets from the same generator: where the black copy shows the image, the mirrored one agrees.
    inside = black != -1
    assert torch.equal(black[inside], mirrored[inside])
    assert set(mirrored.unique().tolist()) <= set(x.unique().tolist())
