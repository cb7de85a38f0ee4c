"""Run by the WebUI (A1111 / Forge) when it loads the extension.

negguide needs nothing beyond what both WebUIs already ship: torch (>= 2.1), gradio (3.41 or 4.x) and Pillow.
So this file installs nothing; it only warns when the WebUI's torch is older than the core supports.
"""

try:
    import torch

    _major, _minor = (int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    if (_major, _minor) < (2, 1):
        print(f"[negguide] torch {torch.__version__} is older than 2.1, which negguide is tested with")
except Exception as e:  # never break the WebUI's start-up
    print(f"[negguide] could not check torch: {e}")
