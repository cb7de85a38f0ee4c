"""The ComfyUI node tests. Without a ComfyUI checkout the nodes run against ``standin/`` (a small stand-in of the
few ComfyUI modules they touch, see its docstring); ``COMFYUI_DIR`` enables the tests against the real program
(``test_comfyui_models.py`` in its Python, ``test_comfyui_integration.py`` through its HTTP API)."""

import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin"
if str(STANDIN) not in sys.path:
    sys.path.insert(0, str(STANDIN))
