"""Helpers shared by the test_webui_* files (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch
from harness import a1111 as H
from harness import forge as F

from negguide_webui.extension import Backend, NegGuideAlwaysOn
from negguide_webui.settings import ARG_NAMES, NegGuideSettings


def make_script(webui, forge_api=F.API):
    """The extension's always-on script; ``forge_api`` None: the adapter finds the API by import, as in a real
    program (the harness exposes the program's module layout during ``process_images``)."""

    class Script(NegGuideAlwaysOn):
        n_args = len(ARG_NAMES)

        @staticmethod
        def backend_factory():
            def encode_empty(p, is_hr):
                w = p.hr_upscale_to_x if is_hr else p.width
                h = p.hr_upscale_to_y if is_hr else p.height
                return p.sd_model.get_learned_conditioning([""], width=w, height=h)

            return Backend(webui.callbacks, webui.state, encode_empty, forge_api)

    return Script()


class Spy:
    """Callbacks registered after the extension's: they see what the extension left in the params."""

    def __init__(self, webui):
        self.den, self.dend, self.after = [], [], []
        self.webui = webui
        webui.callbacks.on_cfg_denoiser(self.on_den)
        webui.callbacks.on_cfg_denoised(self.on_dend)
        webui.callbacks.on_cfg_after_cfg(self.on_after)

    def on_den(self, p):
        d = p.denoiser
        self.den.append(
            {
                "x": p.x.clone(),
                "sigma": p.sigma.clone(),
                "image_cond": p.image_cond.clone(),
                "cond": p.text_cond,
                "uncond": p.text_uncond,
                "call": d.step,
                "steps": d.steps,
                "total": d.total_steps,
                "denoiser": d,
            }
        )

    def on_dend(self, p):
        self.dend.append(p.x.clone())

    def on_after(self, p):
        self.after.append(p.x.clone())

    def remove(self):
        for fn in (self.on_den, self.on_dend, self.on_after):
            self.webui.callbacks.remove_callbacks_for_function(fn)


def run(webui, settings: NegGuideSettings | None = None, spy=False, forge=False, program=None, **kw):
    """One generation in the A1111 harness, the Forge harness (``forge``), or a Forge-line ``program`` of
    ``harness.forge_forks`` (its API found by import)."""
    script = make_script(webui, F.API if program is None else None)
    if program is not None:
        forge, kw = True, {**kw, "program": program}
    ProcCls = F.ForgeProcessing if forge else H.Processing
    p = ProcCls(webui, **kw)
    p.scripts = H.ScriptRunner([script], (settings or NegGuideSettings()).to_args())
    s = None
    if spy:
        # the extension registers in process(); a spy registered now would run first, so register it
        # from a script that runs after ours
        class After:
            n_args = 0

            def process(self, p):
                nonlocal s
                s = Spy(webui)

            def postprocess(self, p, processed):
                s.remove()

        p.scripts = H.ScriptRunner([script, After()], (settings or NegGuideSettings()).to_args())
    webui.sd_model.reset_logs()
    res = (F.process_images if forge else H.process_images)(p)
    return res, p, script, s


def encode(model, text, width=64, height=64):
    return model.get_learned_conditioning([text], width=width, height=height)


def same(a, b, tol=1e-6):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    return a.shape == b.shape and torch.allclose(a, b, atol=tol, rtol=0)
