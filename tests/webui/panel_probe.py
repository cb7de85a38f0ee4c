"""Run under a gradio venv (3.41.2 or 4.x) by test_webui_panel.py: builds the panel, checks it, prints JSON.

Imports nothing but gradio and negguide_webui (no torch), like the WebUI's UI build."""

import asyncio
import json
import sys

import gradio as gr
from panel_app import render_standalone

from negguide_webui import settings as S
from negguide_webui import ui


def is_shown(block) -> bool:
    """A component is on screen when it and every layout block around it are visible."""
    while block is not None:
        if getattr(block, "visible", True) is False:
            return False
        block = getattr(block, "parent", None)
    return True


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
bad = list(S.NegGuideSettings(mode=S.MODE_WINDOWED, window_start=2.5, window_end=3).to_args())
out["status_bad"] = ui.status_text(S.NegGuideSettings.from_args(*bad))
out["status_ok"] = ui.status_text(S.NegGuideSettings(mode=S.MODE_WINDOWED))
out["status_empty"] = ui.status_text(S.NegGuideSettings(mode=S.MODE_WINDOWED, window_start=9, window_end=3))
out["status_dng_bad"] = ui.status_text(S.NegGuideSettings(mode=S.MODE_DNG, prior=2.0, temperature=0))
# which controls each mode shows: the panel built with each mode selected
shown = {}
for mode in S.MODES:
    with gr.Blocks():
        mode_comps, _ = ui.build(False, initial=S.NegGuideSettings(mode=mode))
    by_name = dict(zip(S.ARG_NAMES, mode_comps, strict=True))
    shown[S.MODE_KEYS[mode]] = sorted(
        n for n, c in by_name.items() if n != "mode" and is_shown(c))
out["shown"] = shown
cfg = demo.get_config_file()
out["config_components"] = len(cfg["components"])
out["dependencies"] = len(cfg["dependencies"])


def _target(t):
    return t[0] if isinstance(t, (list, tuple)) else t


# switching the mode in the running app: gradio processes the visibility updates of the layout blocks
switch = [i for i, d in enumerate(cfg["dependencies"])
          if any(_target(t) == comps[0]._id for t in d.get("targets", [])) and len(d["outputs"]) == 6]
try:
    from gradio.state_holder import SessionState  # gradio 4

    state = SessionState(demo)
except ImportError:  # gradio 3
    state = {}
out["mode_switch"] = {}
for mode in S.MODES:
    result = asyncio.run(demo.process_api(switch[0], [mode], state))  # fn_index (3.x) / block_fn (4.x)
    out["mode_switch"][S.MODE_KEYS[mode]] = [u.get("visible") for u in result["data"]]
hr_switch = [i for i, d in enumerate(cfg["dependencies"])
             if any(_target(t) == comps[4]._id for t in d.get("targets", [])) and len(d["outputs"]) == 2]
out["hires_switch"] = {choice: [u.get("visible") for u in asyncio.run(demo.process_api(hr_switch[0], [choice],
                                                                                         state))["data"]]
                       for choice in S.HR_MODES}
if len(sys.argv) > 1 and sys.argv[1] == "--serve":
    demo2, _, _ = render_standalone()
    demo2.launch(server_name="127.0.0.1", server_port=int(sys.argv[2]), prevent_thread_lock=True)
    print(json.dumps(out), flush=True)
    import time

    time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 60)
else:
    print(json.dumps(out))
