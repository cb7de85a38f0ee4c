"""ComfyUI's entry point when this repository is cloned into ``ComfyUI/custom_nodes/``.

ComfyUI imports this file as a package under a name made of its path; the nodes live in ``negguide_comfyui`` and
import the core as ``negguide``, so the repository root goes on ``sys.path`` first (as the WebUI scripts in
``scripts/`` do). Nothing else imports this file: the A1111/Forge loaders read ``scripts/`` and ``install.py``,
pytest collects ``tests/`` only, and the pip package is ``negguide*`` and ``train*``.
"""

import os
import sys

_root = os.path.dirname(os.path.abspath(__file__))
if _root not in sys.path:
    sys.path.insert(0, _root)

from negguide_comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
