"""Nothing unused in the product folders: vulture over negguide, negguide_comfyui, negguide_webui, train and the
WebUI scripts, with tests/vulture_whitelist.py for what the programs call (skipped when vulture is not installed:
``pip install vulture``)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_vulture_finds_nothing_unused():
    pytest.importorskip("vulture")
    done = subprocess.run([sys.executable, "-m", "vulture", "negguide", "negguide_comfyui", "negguide_webui", "train",
                           "scripts", "tests/vulture_whitelist.py", "--min-confidence", "60"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
