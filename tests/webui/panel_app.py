"""The panel alone in a gradio Blocks app, for the screenshots and the gradio compatibility probe (test tools)."""

from __future__ import annotations

from negguide_webui import settings as S
from negguide_webui import ui


def render_standalone(is_img2img: bool = False, open_panel: bool = True, advanced_open: bool = False,
                      initial: S.NegGuideSettings | None = None):
    import gradio as gr

    with gr.Blocks(title="negguide panel") as demo:
        comps, status = ui.build(is_img2img, open_panel=open_panel, initial=initial, advanced_open=advanced_open)
    return demo, comps, status
