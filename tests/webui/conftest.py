"""Fixtures for the WebUI extension tests: a tiny random SD model (built once per module) and harness helpers.

Tests skip with a reason when the CLIP tokenizer files of ``../shared`` are absent (a user's machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.tinysd import find_tokenizer_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _need_tokenizer():
    if find_tokenizer_dir() is None:
        pytest.skip("CLIP tokenizer files (../shared/tokenizers/clip-vit-l-14) not present")


@pytest.fixture(scope="session")
def tiny_sd():
    _need_tokenizer()
    from harness.tinysd import TinySD

    return TinySD(seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl():
    _need_tokenizer()
    from harness.tinysd import TinySD

    return TinySD(seed=1, sdxl=True)


@pytest.fixture(scope="session")
def tiny_sd64():
    """The tiny model computing in float64: batch-size effects of float32 kernels vanish, so per-image
    invariants can be checked exactly."""
    _need_tokenizer()
    from harness.tinysd import TinySD

    return TinySD(seed=0, dtype=torch.float64)
