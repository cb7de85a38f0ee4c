"""Shared fixtures of the train package's tests: where the offline datasets are, and a skip when absent."""

from pathlib import Path

import pytest

from train.paths import shared_root

SHARED = shared_root() / "datasets"


def _need(name: str) -> Path:
    path = (SHARED / name).resolve()
    if not path.is_dir():
        pytest.skip(f"offline {name} copy not found at {path} (only the build machines have ../shared)")
    return path


@pytest.fixture
def mnist_dir() -> Path:
    return _need("mnist")


@pytest.fixture
def cifar_dir() -> Path:
    return _need("cifar10")
