"""negguide: "Diffusion-negative prompting" in the Script dropdown (Desai & Vasconcelos 2024)."""

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _root not in sys.path:
    sys.path.insert(0, _root)

import gradio as gr  # noqa: E402
from modules import processing, scripts  # noqa: E402

from negguide_webui import workflows as W  # noqa: E402


class NegGuideDNPScript(scripts.Script):
    def title(self):
        return "Diffusion-negative prompting"

    def ui(self, is_img2img):
        with gr.Group():
            scale = gr.Slider(
                minimum=0.5,
                maximum=20.0,
                step=0.5,
                value=6.0,
                label="DNS scale s (Eq. 19)",
                elem_id=self.elem_id("dnp_scale"),
            )
            mode = gr.Radio(list(W.DNP_MODES), value=W.DNP_AUTO, label="Caption", elem_id=self.elem_id("dnp_mode"))
            captioner = gr.Dropdown(
                sorted(W.CAPTIONERS),
                value="BLIP (WebUI interrogator)",
                label="Captioner",
                elem_id=self.elem_id("dnp_captioner"),
            )
            caption = gr.Textbox(
                label="My caption of the DNS image (manual mode)", lines=2, elem_id=self.elem_id("dnp_caption")
            )
        return [scale, mode, caption, captioner]

    def run(self, p, scale, mode, caption, captioner):
        return W.run_dnp(p, scale, mode, caption or "", captioner, processing.process_images)
