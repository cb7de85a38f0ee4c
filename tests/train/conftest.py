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


@pytest.fixture(scope="session")
def tiny_t2i_run(tmp_path_factory) -> Path:
    """`python -m train t2i --preset tiny` once per session: the run folder (its model/ is a complete testbed)."""
    import torch

    from train.cli import main

    out = tmp_path_factory.mktemp("t2i") / "straight"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["t2i", "--preset", "tiny", "--cpu", "--mixed-precision", "no", "--checkpoint-minutes", "0",
                     "--output-dir", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out
