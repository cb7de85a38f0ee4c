"""Run under a gradio venv (3.41.2 or 4.x) by test_webui_panel.py: builds the panel, checks it, prints JSON.

Imports nothing but gradio and negguide_webui (no torch), like the WebUI's UI build."""

import json
import sys

import gradio as gr

from negguide_webui import settings as S
from negguide_webui import ui

out = {"gradio": gr.__version__}
with gr.Blocks() as demo:
    comps, status = ui.build(False)
    comps2, _ = ui.build(True)
out["n"] = len(comps)
out["types"] = [type(c).__name__ for c in comps]
out["values"] = [c.value for c in comps]
out["elem_ids"] = [c.elem_id for c in comps] + [c.elem_id for c in comps2]
out["fields"] = [k if isinstance(k, str) else "fn" for _, k in ui.infotext_fields(comps)]
fn_mode = ui.infotext_fields(comps)[0][1]
out["paste_mode"] = [fn_mode({"NegGuide mode": "dng"}), fn_mode({})]
bad = list(S.NegGuideSettings(mode=S.MODE_WINDOWED, window_start=9, window_end=3).to_args())
out["status_bad"] = ui.status_text(S.NegGuideSettings.from_args(*bad))
out["status_ok"] = ui.status_text(S.NegGuideSettings(mode=S.MODE_WINDOWED))
cfg = demo.get_config_file()
out["config_components"] = len(cfg["components"])
out["dependencies"] = len(cfg["dependencies"])
if len(sys.argv) > 1 and sys.argv[1] == "--serve":
    demo2, _, _ = ui.render_standalone()
    demo2.launch(server_name="127.0.0.1", server_port=int(sys.argv[2]), prevent_thread_lock=True)
    print(json.dumps(out), flush=True)
    import time

    time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 60)
else:
    print(json.dumps(out))
