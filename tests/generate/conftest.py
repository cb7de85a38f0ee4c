"""Fixtures for the diffusers front-end tests: tiny random SD1 / SDXL / SD3 pipelines built from configs (once per
session), nothing downloaded. Tests skip with a reason when the CLIP tokenizer files of ``shared/`` are absent."""

from __future__ import annotations

import pytest
import torch
from tiny_pipelines import find_tokenizer_dir


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


_BUILT: dict[str, tuple] = {}  # family -> (pipeline, its scheduler object)


@pytest.fixture(autouse=True)
def _session_pipelines_untouched():
    """Tests share the session's pipelines: a test that swaps a scheduler or a dtype on them fails here."""
    yield
    for family, (pipe, scheduler) in _BUILT.items():
        assert pipe.scheduler is scheduler, f"a test replaced the session {family} pipeline's scheduler"
        assert pipe.dtype == torch.float32, f"a test changed the session {family} pipeline's dtype"


def _build(family: str):
    if find_tokenizer_dir() is None:
        pytest.skip("CLIP tokenizer files (shared/tokenizers/clip-vit-l-14) not present")
    from tiny_pipelines import BUILDERS

    pipe = BUILDERS[family]()
    pipe.set_progress_bar_config(disable=True)
    _BUILT[family] = (pipe, pipe.scheduler)
    return pipe


@pytest.fixture(scope="session")
def sd_pipe():
    return _build("sd")


@pytest.fixture(scope="session")
def sdxl_pipe():
    return _build("sdxl")


@pytest.fixture(scope="session")
def sd3_pipe():
    return _build("sd3")


@pytest.fixture(scope="session")
def pipes(request):
    """Lazily built pipelines by family name (``pipes("sd")``)."""
    return lambda family: request.getfixturevalue(f"{family}_pipe")
