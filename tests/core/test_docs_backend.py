"""docs/core.md's "Write your own backend" runs as written, and the backend it builds keeps the core's invariants
for every mode (a window over every step is the plain negative prompt, lambda0 = 0 and an empty window are the empty
negative prompt), with DNG's gated tracker probing only some images on some steps."""

import re
from pathlib import Path

import pytest
import torch

from negguide import DNGConfig, GuidanceSpec, SLDConfig, StepWindow

DOC = Path(__file__).resolve().parents[2] / "docs" / "core.md"


@pytest.fixture(scope="module")
def backend():
    text = DOC.read_text()
    section = text.split("## Write your own backend", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 60, "the example should stay a 60-line backend"
    namespace = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_the_example_runs_dng_with_the_gated_tracker_on_probe_subsets(backend):
    run, images = backend["run"], backend["images"]
    assert run.tracker_name() == "flow-gated" and torch.isfinite(images).all()
    dng_steps = [r for r in run.records if "lambda" in r]
    assert len(dng_steps) == len(backend["SIGMAS"]) - 1
    probed = [r["probe_rows"] for r in dng_steps]
    assert 0 < sum(probed) < 2 * 3 * len(dng_steps)  # some images on some steps: the row subsets ran
    assert 1.0 < run.average_extra_rows() < 3.0


@pytest.mark.parametrize("spec", [GuidanceSpec("np", 5.0), GuidanceSpec("np3", 5.0, window=StepWindow(2, 4)),
                                  GuidanceSpec("dns", 5.0, dns_scale=2.0), GuidanceSpec("sld", 5.0, sld=SLDConfig()),
                                  GuidanceSpec("perp_neg", 5.0), GuidanceSpec("dng", 5.0, dng=DNGConfig(probe_pairs=2)),
                                  GuidanceSpec("dng", 5.0, dng=DNGConfig(tracker="flow-moment"))],
                         ids=lambda s: s.mode)
def test_every_mode_samples_through_the_example(backend, spec):
    images, run = backend["sample"](spec, backend["SIGMAS"])
    assert torch.isfinite(images).all() and len(run.records) == len(backend["SIGMAS"]) - 1


def test_the_example_keeps_the_exact_invariants(backend):
    sample, sigmas = backend["sample"], backend["SIGMAS"]
    plain, _ = sample(GuidanceSpec("np", 5.0), sigmas)
    everywhere, _ = sample(GuidanceSpec("np", 5.0, window=StepWindow.always()), sigmas)
    assert torch.equal(plain, everywhere)
    empty, _ = sample(GuidanceSpec("np", 5.0, window=StepWindow.never()), sigmas)
    no_dng, run = sample(GuidanceSpec("dng", 5.0, dng=DNGConfig(lambda0=0.0)), sigmas)
    assert torch.equal(empty, no_dng) and run.tracker_name() is None
    assert not torch.equal(plain, empty)
