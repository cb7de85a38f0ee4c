"""Fixtures for the WebUI extension tests: a tiny random SD model (built once per session) and a WebUI around it
(A1111, or Forge with its model objects), checked on the way out: no callback errors, none left registered.

Tests skip with a reason when the CLIP tokenizer files of ``../shared`` are absent (a user's machine)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
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


FORGE_OBJECTS = ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora")


@contextmanager
def _webui(sd, forge: bool):
    from harness import a1111 as H
    from harness import forge as F

    if forge:
        F.make_forge_model(sd)
    w = H.WebUI(sd)
    yield w
    assert w.callbacks.errors == [], w.callbacks.errors[0] if w.callbacks.errors else ""
    assert w.callbacks.count() == 0, "callbacks leaked out of the job"
    if forge:
        for attr in FORGE_OBJECTS:
            delattr(sd, attr)


@pytest.fixture
def a1111(tiny_sd):
    with _webui(tiny_sd, forge=False) as w:
        yield w


@pytest.fixture
def forge(tiny_sd):
    with _webui(tiny_sd, forge=True) as w:
        yield w


@pytest.fixture
def forge_xl(tiny_sdxl):
    with _webui(tiny_sdxl, forge=True) as w:
        yield w


@pytest.fixture
def forge64(tiny_sd64):
    with _webui(tiny_sd64, forge=True) as w:
        yield w
