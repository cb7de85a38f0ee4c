"""The nodes in the real ComfyUI, in-process, with tiny random SD1 / SDXL / SD3 / Flux models built with ComfyUI's
own model classes: exact invariants through ComfyUI's own KSampler and SamplerCustomAdvanced, every sampler's
tracker, per-image state, interruption, refusals. Runs only when ``COMFYUI_DIR`` points to a ComfyUI checkout:

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/venv/bin/python \\
        bash run.sh test tests/comfyui/test_comfyui_models.py

The checks run in ComfyUI's Python (``real_comfyui_checks.py``), once per session; each is reported as its own
test. About 5 minutes on 2 idle CPU cores.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from real_comfyui_checks import CHECKS

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = [pytest.mark.skipif(not COMFYUI_DIR, reason="COMFYUI_DIR is not set (no real ComfyUI to test against)"),
              pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parent / "real_comfyui_checks.py"


@pytest.fixture(scope="module")
def results():
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    done = subprocess.run([python, str(SCRIPT), COMFYUI_DIR], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"the checks did not run (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return {r["check"]: r for r in lines}


@pytest.mark.parametrize("check", CHECKS)
def test_in_real_comfyui(results, check):
    result = results.get(check)
    assert result is not None, f"{check} did not report"
    print(f"{check} ({result['seconds']} s): {result['detail']}")
    assert result["ok"], result["detail"]
