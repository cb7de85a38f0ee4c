"""negguide: "Negative prompt timing sweep" in the Script dropdown (Ban et al. 2024, Fig. 2/9)."""

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _root not in sys.path:
    sys.path.insert(0, _root)

import gradio as gr  # noqa: E402
from modules import processing, scripts  # noqa: E402

from negguide_webui import workflows as W  # noqa: E402


class NegGuideSweepScript(scripts.Script):
    def title(self):
        return "Negative prompt timing sweep"

    def ui(self, is_img2img):
        starts = gr.Textbox(
            value="1, 5, 10, 15",
            label="Window start steps (1-based; '1' with a short window shows the reverse activation)",
            elem_id=self.elem_id("sweep_starts"),
        )
        lengths = gr.Textbox(value="3, 10", label="Window lengths (steps)", elem_id=self.elem_id("sweep_lengths"))
        refs = gr.Checkbox(
            value=True,
            label="Add 'no negative' and 'negative on all steps' references",
            elem_id=self.elem_id("sweep_refs"),
        )
        return [starts, lengths, refs]

    def run(self, p, starts, lengths, refs):
        images, labels, infotexts, grid = W.run_sweep(
            p, starts, lengths, refs, processing.process_images, W.labelled_grid
        )
        return processing.Processed(
            p,
            [grid] + images,
            p.seed,
            infotexts[0] if infotexts else "",
            infotexts=[infotexts[0] if infotexts else ""] + infotexts,
        )
