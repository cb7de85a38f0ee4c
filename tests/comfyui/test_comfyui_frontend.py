"""The nodes as ComfyUI's real frontend builds them (headless Chromium on a real server's page): every node, its
title, widgets with their defaults, inputs and outputs. Runs only when ``COMFYUI_DIR`` is set and a Python with
``playwright`` is given (``COMFYUI_PLAYWRIGHT_PYTHON``; Debian's chromium, no browser download):

    COMFYUI_DIR=... COMFYUI_PYTHON=... COMFYUI_PLAYWRIGHT_PYTHON=/path/to/venv/bin/python \\
        bash run.sh test tests/comfyui/test_comfyui_frontend.py

The same tool (``frontend.py``) made docs/comfyui-*.png and examples/comfyui/*.json.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from comfyui_server import Server, default_python
from test_comfyui_examples import widget_names

import negguide_comfyui as pack

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PLAYWRIGHT_PYTHON = os.environ.get("COMFYUI_PLAYWRIGHT_PYTHON")
pytestmark = [
    pytest.mark.skipif(not COMFYUI_DIR, reason="COMFYUI_DIR is not set (no real ComfyUI to test against)"),
    pytest.mark.skipif(not PLAYWRIGHT_PYTHON, reason="COMFYUI_PLAYWRIGHT_PYTHON is not set (a Python with playwright)"),
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed"),
    pytest.mark.slow,
]
TOOL = Path(__file__).resolve().parent / "frontend.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("frontend")
    server = Server(COMFYUI_DIR, base, None, default_python()).start()
    try:
        subprocess.run([PLAYWRIGHT_PYTHON, str(TOOL), server.url, "--shots", str(base), "--report",
                        str(base / "report.json")], check=True, timeout=900)
    finally:
        server.stop()
    return json.loads((base / "report.json").read_text()), base


@pytest.mark.parametrize("name", sorted(pack.NODE_CLASS_MAPPINGS))
def test_the_frontend_builds_the_node_as_declared(report, name):
    nodes, shots = report
    built, node_class = nodes[name], pack.NODE_CLASS_MAPPINGS[name]
    assert built["title"] == pack.NODE_DISPLAY_NAME_MAPPINGS[name]
    widgets = [(w, v) for w, v in built["widgets"] if w != "control_after_generate"]
    assert [w for w, _ in widgets] == widget_names(node_class)
    inputs = node_class.INPUT_TYPES()
    declared = {**inputs["required"], **inputs.get("optional", {})}
    for widget, value in widgets:
        assert value == declared[widget][1].get("default", declared[widget][0][0]), widget
    assert [o for o, _ in built["outputs"]] == list(node_class.RETURN_NAMES)
    assert [t for _, t in built["outputs"]] == list(node_class.RETURN_TYPES)
    sockets = [i for i, t in built["inputs"] if t not in ("FLOAT", "INT", "COMBO")]
    assert sockets == [k for k, v in declared.items() if k not in widget_names(node_class)]
    assert (shots / f"comfyui-{name}.png").stat().st_size > 2000
