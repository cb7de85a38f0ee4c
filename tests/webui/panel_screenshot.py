"""Serve the panel standalone on 127.0.0.1 and look at it with headless Chromium.

    PYTHONPATH=. ../venvs/gr3/bin/python tests/webui/panel_screenshot.py docs/webui-panel-gradio3.png [MODE] [PORT]

Writes the screenshot, and the DOM as Chromium rendered it (after gradio's JavaScript ran) next to it as
``.html``. Used by test_webui_panel.py and for the docs' screenshots. Needs a gradio venv and Debian's
``chromium``."""

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from panel_app import render_standalone

from negguide_webui import settings as S
from negguide_webui import ui  # noqa: F401

out = Path(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "dng"
port = int(sys.argv[3]) if len(sys.argv) > 3 else 7861
initial = S.NegGuideSettings(mode=S.MODE_FROM_KEY[mode])
demo, _, _ = render_standalone(open_panel=True, advanced_open=(mode == "dng"), initial=initial)
demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True)
url = f"http://127.0.0.1:{port}/"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=2).read()
        break
    except Exception:
        time.sleep(0.2)
chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
common = [
    chrome,
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--window-size=900,900",
    "--virtual-time-budget=8000",
]
try:
    subprocess.run([*common, f"--screenshot={out}", url], check=True, timeout=120, capture_output=True)
    dom = subprocess.run([*common, "--dump-dom", url], check=True, timeout=120, capture_output=True, text=True)
    out.with_suffix(".html").write_text(dom.stdout)
finally:
    demo.close()
print(out)
