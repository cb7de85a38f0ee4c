"""The node pack inside the real ComfyUI, in-process, with tiny random SD1 / SDXL / SD3 / Flux models.

    $COMFYUI_PYTHON tests/comfyui/real_comfyui_checks.py COMFYUI_DIR [CHECK ...]

Runs in ComfyUI's own Python. Loads the repository through ComfyUI's own custom-node loader and samples with
ComfyUI's own node classes (KSampler, SamplerCustomAdvanced, KSamplerSelect, BasicScheduler, RandomNoise, the
sampler nodes, BasicGuider, DualCFGGuider, PerpNegGuider). Prints one JSON line per check: ``{"check", "ok",
"detail", "seconds"}``. ``test_comfyui_models.py`` runs it when ``COMFYUI_DIR`` is set.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHECKS = ("loads_through_comfyuis_loader", "sd1_slot_modes_are_comfyui_cfg_bit_for_bit", "sd1_guider_equals_patch",
          "every_sampler_gets_its_tracker", "sampler_nodes_options_set_the_tracker", "batches_keep_per_image_state",
          "interrupted_prompt_leaves_nothing_behind", "two_patched_models_share_nothing",
          "foreign_guiders_are_refused", "sdxl_conditionings", "sd3_flow_frame", "flux_guidance_distilled_refused",
          "plot_node_draws_the_trace", "sd1_adaptive_and_constant_negative",
          "empty_prompt_from_clip_is_clip_text_encode",
          "queue_refuses_bad_settings", "newer_model_sampling_types")
DNG = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8, "tracker": "auto"}
WINDOW = {"form": "2-term", "window_unit": "steps"}


class ComfyApp:
    """The real ComfyUI's nodes and the negguide nodes as ComfyUI registered them."""

    def __init__(self, comfyui_dir: str):
        sys.path[:0] = [comfyui_dir, str(HERE)]
        import comfy.cli_args

        comfy.cli_args.args.cpu = True  # before comfy.model_management picks a device
        import nodes
        from comfy_extras import nodes_custom_sampler, nodes_perpneg

        self.loaded = asyncio.run(nodes.load_custom_node(str(REPO)))
        self.nodes, self.sampling_nodes, self.perpneg = nodes, nodes_custom_sampler, nodes_perpneg
        self.ours = {k: v for k, v in nodes.NODE_CLASS_MAPPINGS.items() if k.startswith("NegGuide")}

    def ksampler(self, model, positive, negative, family, sampler="euler", steps=3, cfg=5.0, latent=None, seed=11):
        import real_models

        scheduler = "simple" if family in ("sd3", "flux") else "normal"
        latent = latent or real_models.latent(family)
        return self.nodes.KSampler().sample(model, seed, steps, cfg, sampler, scheduler, positive, negative,
                                            latent)[0]["samples"]

    def custom(self, guider, family, sampler="euler", steps=3, latent=None, seed=11, sampler_object=None):
        import real_models

        model = guider.model_patcher
        scheduler = "simple" if family in ("sd3", "flux") else "normal"
        sigmas = self.sampling_nodes.BasicScheduler().get_sigmas(model, scheduler, steps, 1.0)[0]
        sampler_object = sampler_object or self.sampling_nodes.KSamplerSelect().get_sampler(sampler)[0]
        noise = self.sampling_nodes.RandomNoise().get_noise(seed)[0]
        return self.sampling_nodes.SamplerCustomAdvanced().sample(noise, guider, sampler_object, sigmas,
                                                          latent or real_models.latent(family))[0]["samples"]

    def patch(self, node, model, empty, **values):
        return self.ours[node]().apply(model, empty, **values)

    def guider(self, node, model, positive, negative, empty, **values):
        if negative is None:
            return self.ours[node]().get_guider(model, positive, empty, **values)
        return self.ours[node]().get_guider(model, positive, empty, negative=negative, **values)


def _setup(app: ComfyApp, family: str):
    import real_models

    m = real_models.model(family)
    return m, *(real_models.conditioning(family, seed) for seed in (1, 2, 3))


def _equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and torch.equal(a, b)


def _slot_mode_invariants(app: ComfyApp, family: str, samplers, cfg=5.0) -> list[str]:
    """The modes that only choose ComfyUI's CFG slots must give ComfyUI's own CFG images, bit for bit."""
    m, pos, neg, empty = _setup(app, family)
    failures = []
    for sampler in samplers:
        def run(model, p=pos, n=neg, s=sampler):
            return app.ksampler(model, p, n, family, s, cfg=cfg)

        stock, stock_empty, swapped = run(m), run(m, pos, empty), run(m, empty, pos)
        cases = {
            "window over every step == plain negative": (app.patch("NegGuideWindowedPatch", m, empty, **WINDOW,
                                                                     window_start=1, window_end=3)[0], stock),
            "empty window == empty negative": (app.patch("NegGuideWindowedPatch", m, empty, **WINDOW,
                                                           window_start=6, window_end=5)[0], stock_empty),
            "DNG lambda0 = 0 == empty negative": (app.patch("NegGuideDNGPatch", m, empty,
                                                              **{**DNG, "lambda0": 0.0})[0], stock_empty),
            "DNS patch == swapped prompts": (app.patch("NegGuideDNSPatch", m, empty)[0], swapped),
        }
        for name, (patched, expected) in cases.items():
            if not _equal(run(patched), expected):
                failures.append(f"{family}/{sampler}: {name}")
        # SamplerCustomAdvanced's schedule is BasicScheduler's (KSampler drops a penultimate sigma for some
        # samplers): the guider is compared with ComfyUI's own CFGGuider on the same path
        dns = app.guider("NegGuideDNSGuider", m, pos, None, empty, dns_scale=cfg - 1)[0]
        stock_swapped = app.sampling_nodes.CFGGuider().get_guider(m, empty, pos, cfg)[0]
        if not _equal(app.custom(dns, family, sampler), app.custom(stock_swapped, family, sampler)):
            failures.append(f"{family}/{sampler}: DNS guider (s = cfg - 1) == CFGGuider with swapped prompts")
    return failures


# --- checks ----------------------------------------------------------------------------------------------------
def loads_through_comfyuis_loader(app: ComfyApp) -> str:
    assert app.loaded, "nodes.load_custom_node returned False"
    modes = ("Windowed", "DNG", "DNS", "SLD", "PerpNeg", "Adaptive", "ConstantNegative")
    expected = {f"NegGuide{mode}{kind}" for mode in modes for kind in ("Guider", "Patch")}
    assert set(app.ours) == expected | {"NegGuidePlot"}, sorted(app.ours)
    names = app.nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert all(names[k].endswith("(negguide)") for k in app.ours)
    return f"{len(app.ours)} nodes registered"


def sd1_slot_modes_are_comfyui_cfg_bit_for_bit(app: ComfyApp) -> str:
    samplers = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_sde", "uni_pc")
    failures = _slot_mode_invariants(app, "sd1", samplers)
    assert not failures, failures
    return f"5 invariants x {len(samplers)} samplers"


def sd1_guider_equals_patch(app: ComfyApp) -> str:
    m, pos, neg, empty = _setup(app, "sd1")
    cases = [("DNG", DNG, "euler_ancestral"), ("DNG", DNG, "euler"),
             ("Windowed", {**WINDOW, "form": "3-term", "window_start": 2, "window_end": 3}, "dpmpp_2m"),
             ("PerpNeg", {"neg_scale": 1.0}, "euler"),
             ("SLD", {"threshold": 0.04, "scale": 100.0, "momentum_scale": 0.1, "momentum_beta": 0.2,
                      "warmup_steps": 0}, "euler")]
    for key, values, sampler in cases:
        guided = app.custom(app.guider(f"NegGuide{key}Guider", m, pos, neg, empty, cfg=5.0, **values)[0],
                              "sd1", sampler)
        patched = app.ksampler(app.patch(f"NegGuide{key}Patch", m, empty, **values)[0], pos, neg, "sd1", sampler)
        assert _equal(guided, patched), f"{key} on {sampler}: max |diff| {float((guided - patched).abs().max())}"
    return f"{len(cases)} modes"


def every_sampler_gets_its_tracker(app: ComfyApp) -> str:
    import comfy.samplers
    import torch
    from sampler_families import expected_tracker

    m, pos, neg, empty = _setup(app, "sd1")
    patched, trace = app.patch("NegGuideDNGPatch", m, empty, **DNG)
    seen = []
    for name in comfy.samplers.SAMPLER_NAMES:
        out = app.ksampler(patched, pos, neg, "sd1", name, steps=2)
        summary = trace.passes[-1]
        assert summary.tracker == expected_tracker(name), f"{name}: {summary.tracker}"
        assert torch.isfinite(out).all() and summary.evaluations >= 1, name
        seen.append(f"{name}:{summary.evaluations}")
    return f"{len(seen)} samplers (name:evaluations for 2 steps) " + " ".join(seen)


def sampler_nodes_options_set_the_tracker(app: ComfyApp) -> str:
    m, pos, neg, empty = _setup(app, "sd1")
    nodes = app.sampling_nodes
    cases = [(nodes.SamplerEulerAncestral().get_sampler(0.0, 1.0)[0], "flow-gated"),
             (nodes.SamplerEulerAncestral().get_sampler(1.0, 1.0)[0], "transition"),
             (nodes.SamplerDPMPP_2M_SDE().get_sampler("midpoint", 1.0, 1.0, "cpu")[0], "transition"),
             (nodes.SamplerER_SDE().get_sampler("ODE", 3, 1.0, 1.0)[0], "flow-gated"),
             (nodes.SamplerER_SDE().get_sampler("ER-SDE", 3, 1.0, 1.0)[0], "transition"),
             (nodes.SamplerSASolver().get_sampler(m, 1.0, 0.2, 0.8, 1.0, 3, 4, False, False)[0], "transition"),
             (nodes.SamplerSASolver().get_sampler(m, 0.0, 0.2, 0.8, 1.0, 3, 4, False, False)[0], "flow-gated"),
             (nodes.SamplerLMS().get_sampler(4)[0], "flow-gated")]
    guider, trace = app.guider("NegGuideDNGGuider", m, pos, neg, empty, cfg=5.0, **DNG)
    for sampler, expected in cases:
        app.custom(guider, "sd1", steps=4, sampler_object=sampler)
        assert trace.passes[-1].tracker == expected, (trace.passes[-1].sampler, trace.passes[-1].tracker, expected)
    return f"{len(cases)} sampler nodes"


def batches_keep_per_image_state(app: ComfyApp) -> str:
    import real_models

    m, pos, neg, empty = _setup(app, "sd1")
    details = []
    for tracker in ("flow-hutchinson", "transition"):
        dng = app.patch("NegGuideDNGPatch", m, empty, **{**DNG, "tracker": tracker})[0]

        def run(index, model=dng):
            return app.ksampler(model, pos, neg, "sd1", "euler", latent=real_models.latent("sd1", len(index), index))

        a, b, c = run([0, 1]), run([1, 0]), run([0, 2])
        assert _equal(a[1], b[0]) and _equal(a[0], b[1]), f"{tracker}: an image's result depends on its position"
        assert _equal(a[0], c[0]), f"{tracker}: an image's result depends on the other image of its batch"
        single = run([1])
        # a single run makes 3 rows per call where the batch makes 6: the UNet's own rounding differs; ComfyUI's
        # stateless DualCFGGuider (3 conditionings per call) shows the same
        dual = app.sampling_nodes.Guider_DualCFG(m)
        dual.set_conds(pos, empty, neg)
        dual.set_cfg(5.0, 2.0)
        d2 = app.custom(dual, "sd1", latent=real_models.latent("sd1", 2, [0, 1]))
        d1 = app.custom(dual, "sd1", latent=real_models.latent("sd1", 1, [1]))
        ours, theirs = float((a[1] - single[0]).abs().max()), float((d2[1] - d1[0]).abs().max())
        details.append(f"{tracker}: batch vs single max|diff| {ours:.3g} (DualCFGGuider: {theirs:.3g})")
        assert ours <= 10 * theirs + 1e-5, details[-1]
    window = app.patch("NegGuideWindowedPatch", m, empty, **WINDOW, window_start=2, window_end=3)[0]
    run = lambda idx, model: app.ksampler(model, pos, neg, "sd1", "euler",  # noqa: E731
                                            latent=real_models.latent("sd1", len(idx), idx))
    stock_invariant = _equal(run([0, 1], m)[1], run([1], m)[0])
    window_invariant = _equal(run([0, 1], window)[1], run([1], window)[0])
    assert window_invariant == stock_invariant, "windowed: batch vs single differs where stock CFG does not"
    details.append(f"windowed batch == single: {window_invariant} (stock CFG: {stock_invariant})")
    return "; ".join(details)


def interrupted_prompt_leaves_nothing_behind(app: ComfyApp) -> str:
    import comfy.model_management as mm
    import comfy.utils

    m, pos, neg, empty = _setup(app, "sd1")
    patched, trace = app.patch("NegGuideDNGPatch", m, empty, **DNG)
    before = (repr(patched.model_options), repr(patched.wrappers))
    reference = app.ksampler(patched, pos, neg, "sd1", "euler", steps=4)

    def progress(value, total, preview, prompt_id=None, node_id=None):  # main.py's hook
        # interrupt at the first update mid-pass: v0.33 sends a step's update only 100 ms after the previous one
        if 1 <= value < total:
            mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()

    comfy.utils.set_progress_bar_global_hook(progress)
    interrupted = False
    try:
        app.ksampler(patched, pos, neg, "sd1", "euler", steps=4)
    except mm.InterruptProcessingException:
        interrupted = True
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert interrupted, "the sampler was not interrupted"
    assert trace.passes == [], "the interrupted pass left a record"
    assert (repr(patched.model_options), repr(patched.wrappers)) == before, "the patched model changed"
    assert _equal(app.ksampler(patched, pos, neg, "sd1", "euler", steps=4), reference)
    return "interrupted mid-pass; the next run equals the first"


def two_patched_models_share_nothing(app: ComfyApp) -> str:
    m, pos, neg, empty = _setup(app, "sd1")
    dng = app.patch("NegGuideDNGPatch", m, empty, **DNG)[0]
    window = app.patch("NegGuideWindowedPatch", m, empty, **WINDOW, window_start=2, window_end=3)[0]
    alone = [app.ksampler(x, pos, neg, "sd1", "euler") for x in (dng, window)]
    for x in (window, dng, dng, window):  # interleaved and repeated
        app.ksampler(x, pos, neg, "sd1", "euler")
    again = [app.ksampler(x, pos, neg, "sd1", "euler") for x in (dng, window)]
    assert all(_equal(a, b) for a, b in zip(alone, again, strict=True))
    assert not m.wrappers.get("outer_sample"), "the unpatched model got a wrapper"
    return "DNG and windowed patches of one model, interleaved"


def foreign_guiders_are_refused(app: ComfyApp) -> str:
    from negguide.checks import SettingsError

    m, pos, neg, empty = _setup(app, "sd1")
    patched = app.patch("NegGuideDNGPatch", m, empty, **DNG)[0]
    basic = app.sampling_nodes.BasicGuider().get_guider(patched, pos)[0]
    dual = app.sampling_nodes.Guider_DualCFG(patched)
    dual.set_conds(pos, empty, neg)
    dual.set_cfg(5.0, 2.0)
    perp = app.perpneg.Guider_PerpNeg(patched)
    perp.set_conds(pos, neg, empty)
    perp.set_cfg(5.0, 1.0)
    messages = []
    for guider, expected in ((basic, "the BasicGuider node has no negative"),
                             (dual, "the DualCFGGuider node computes its own guidance"),
                             (perp, "the PerpNegGuider node computes its own guidance")):
        try:
            app.custom(guider, "sd1")
        except SettingsError as e:
            assert expected in str(e) and "Guider_" not in str(e), str(e)
            messages.append(type(guider).__name__)
        else:
            raise AssertionError(f"{type(guider).__name__} was not refused")
    return "refused: " + ", ".join(messages)


def sdxl_conditionings(app: ComfyApp) -> str:
    failures = _slot_mode_invariants(app, "sdxl", ("euler", "euler_ancestral"))
    assert not failures, failures
    m, pos, neg, empty = _setup(app, "sdxl")
    trackers = []
    for sampler in ("euler_ancestral", "dpmpp_2m"):
        guided, trace = app.guider("NegGuideDNGGuider", m, pos, neg, empty, cfg=5.0, **DNG)
        a = app.custom(guided, "sdxl", sampler)
        b = app.ksampler(app.patch("NegGuideDNGPatch", m, empty, **DNG)[0], pos, neg, "sdxl", sampler)
        assert _equal(a, b), f"DNG guider != patch on {sampler}"
        trackers.append(trace.passes[-1].tracker)
    return f"slot invariants on 2 samplers; DNG trackers {trackers}"


def sd3_flow_frame(app: ComfyApp) -> str:
    from negguide.checks import SettingsError

    failures = _slot_mode_invariants(app, "sd3", ("euler", "dpmpp_2m", "heun"))
    assert not failures, failures
    m, pos, neg, empty = _setup(app, "sd3")
    stock = app.ksampler(m, pos, neg, "sd3")
    window = app.patch("NegGuideWindowedPatch", m, empty, form="2-term", window_unit="sigma", window_start=1.0,
                         window_end=0.0)[0]
    assert _equal(app.ksampler(window, pos, neg, "sd3"), stock), "sigma window from t = 1 != plain negative"
    dng, trace = app.patch("NegGuideDNGPatch", m, empty, **DNG)
    app.ksampler(dng, pos, neg, "sd3", "euler")
    summary = trace.passes[-1]
    assert summary.tracker == "flow-gated" and summary.final_p is not None
    for attempt, message in ((lambda: app.ksampler(dng, pos, neg, "sd3", "euler_ancestral"),
                              "stochastic rectified-flow sampler"),
                             (lambda: app.patch("NegGuideSLDPatch", m, empty, threshold=0.04, scale=100.0,
                                                  momentum_scale=0.1, momentum_beta=0.2, warmup_steps=0),
                              "rectified-flow")):
        try:
            attempt()
        except SettingsError as e:
            assert message in str(e), str(e)
        else:
            raise AssertionError(f"not refused: {message}")
    return f"slot invariants on 3 samplers, sigma window from t = 1, DNG {summary.tracker}, refusals"


def flux_guidance_distilled_refused(app: ComfyApp) -> str:
    from negguide.checks import SettingsError

    m, pos, neg, empty = _setup(app, "flux")
    try:
        app.patch("NegGuideDNGPatch", m, empty, **DNG)
    except SettingsError as e:
        assert "guidance-distilled" in str(e), str(e)
    else:
        raise AssertionError("DNG on Flux was not refused")
    window = app.patch("NegGuideWindowedPatch", m, empty, **WINDOW, window_start=1, window_end=3)[0]
    try:
        app.ksampler(window, pos, neg, "flux", cfg=1.0)
    except SettingsError as e:
        assert "runs without CFG" in str(e), str(e)
    else:
        raise AssertionError("a window at cfg 1 on Flux was not refused")
    assert _equal(app.ksampler(window, pos, neg, "flux", cfg=2.0), app.ksampler(m, pos, neg, "flux", cfg=2.0))
    return "DNG refused; windowed refused at cfg 1, == plain negative at cfg 2"


def plot_node_draws_the_trace(app: ComfyApp) -> str:
    m, pos, neg, empty = _setup(app, "sd1")
    patched, trace = app.patch("NegGuideDNGPatch", m, empty, **DNG)
    out = app.ksampler(patched, pos, neg, "sd1", "euler_ancestral")
    image, summary = app.ours["NegGuidePlot"]().plot(trace, {"samples": out}, 640)
    assert tuple(image.shape) == (1, 236, 640, 3) and "tracker transition" in summary, (image.shape, summary)
    return summary


def sd1_adaptive_and_constant_negative(app: ComfyApp) -> str:
    m, pos, neg, empty = _setup(app, "sd1")
    samplers = ("euler", "euler_ancestral", "heun", "dpmpp_2m")
    for sampler in samplers:
        for start, end in ((2, 3), (1, 3)):
            windowed = app.patch("NegGuideWindowedPatch", m, empty, **WINDOW, window_start=start, window_end=end)[0]
            adaptive = app.patch("NegGuideAdaptivePatch", m, empty, window_unit="steps", window_start=start,
                                 window_end=end, signal="none", threshold=0.5)[0]
            expected = app.ksampler(windowed, pos, neg, "sd1", sampler)
            assert _equal(app.ksampler(adaptive, pos, neg, "sd1", sampler), expected), f"adaptive none {sampler}"
    patched, trace = app.patch("NegGuideAdaptivePatch", m, empty, window_unit="steps", window_start=1, window_end=3,
                               signal="alignment", threshold=-1.0)
    app.ksampler(patched, pos, neg, "sd1", "euler")
    summary = trace.describe()
    assert "negative started per image at step 1" in summary, summary
    zero = app.patch("NegGuideConstantNegativePatch", m, empty, negative_scale=0.0)[0]
    assert _equal(app.ksampler(zero, pos, neg, "sd1", "euler_ancestral"),
                  app.ksampler(m, pos, empty, "sd1", "euler_ancestral")), "constant negative at 0 != empty negative"
    guided = app.guider("NegGuideConstantNegativeGuider", m, pos, neg, empty, cfg=5.0, negative_scale=2.0)[0]
    patched2 = app.patch("NegGuideConstantNegativePatch", m, empty, negative_scale=2.0)[0]
    assert _equal(app.custom(guided, "sd1", "euler_ancestral"),
                  app.ksampler(patched2, pos, neg, "sd1", "euler_ancestral")), "constant negative guider != patch"
    return (f"adaptive (signal none) == windowed on {len(samplers)} samplers x 2 windows; {summary}; constant "
            "negative 0 == empty negative, guider == patch")


def empty_prompt_from_clip_is_clip_text_encode(app: ComfyApp) -> str:
    """A random full-size SD1 CLIP built with ComfyUI's own classes: a node given only 'clip' samples what the same
    node given CLIP Text Encode("") does, bit for bit."""
    import comfy.sd
    import comfy.supported_models
    import real_models
    import torch
    from random_checkpoint import randomize

    config = comfy.supported_models.SD15(dict(real_models.FAMILIES["sd1"][1]))
    clip = comfy.sd.CLIP(config.clip_target(), embedding_directory=None)
    randomize(clip.cond_stage_model, torch.Generator().manual_seed(7))
    encode = app.nodes.CLIPTextEncode()
    pos, neg, empty = (encode.encode(clip, text)[0] for text in ("a red car", "rust", ""))
    m = real_models.model("sd1")
    cases = [("NegGuideWindowedPatch", {**WINDOW, "window_start": 2, "window_end": 3}, "euler"),
             ("NegGuideDNGPatch", DNG, "euler_ancestral")]
    for node, values, sampler in cases:
        given = app.ours[node]().apply(m, empty_conditioning=empty, **values)[0]
        from_clip = app.ours[node]().apply(m, clip=clip, **values)[0]
        assert _equal(app.ksampler(from_clip, pos, neg, "sd1", sampler),
                      app.ksampler(given, pos, neg, "sd1", sampler)), node
    guided = app.ours["NegGuideDNSGuider"]().get_guider(m, pos, clip=clip, dns_scale=4.0)[0]
    stock = app.sampling_nodes.CFGGuider().get_guider(m, empty, pos, 5.0)[0]
    assert _equal(app.custom(guided, "sd1"), app.custom(stock, "sd1")), "DNS guider with clip != swapped CFG"
    return f"{len(cases)} patches and the DNS guider: clip == CLIP Text Encode(\"\"), bit for bit"


def queue_refuses_bad_settings(app: ComfyApp) -> str:
    """ComfyUI's own prompt validation (execution.validate_inputs) runs the nodes' VALIDATE_INPUTS: NaN and a window
    from step 0 are refused when the prompt is queued, with the node's sentence."""
    import math

    import execution

    def node_errors(class_type: str, inputs: dict) -> list[str]:
        """The node's own custom-validation errors (its linked loader fails validation: no such file)."""
        loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "none.safetensors"}}
        prompt = {"1": {"class_type": class_type, "inputs": {**inputs, "model": ["2", 0], "clip": ["2", 1]}},
                  "2": loader}
        valid, errors, _ = asyncio.run(execution.validate_inputs("check", prompt, "1", {}))
        return [e.get("details", "") for e in errors if e["type"] == "custom_validation_failed"]

    dng = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8, "tracker": "auto"}
    assert node_errors("NegGuideDNGPatch", dng) == [], "valid settings refused"
    refused = node_errors("NegGuideDNGPatch", {**dng, "lambda0": math.nan})
    assert refused and "lambda0 must be a finite number, got nan" in refused[0], refused
    window = node_errors("NegGuideWindowedGuider", {**WINDOW, "cfg": 5.0, "window_start": 0.0, "window_end": 4.0})
    assert window and "step windows count from step 1" in window[0], window
    return f"refused at queue time: {refused[0][:160]} | {window[0][:120]}"


def newer_model_sampling_types(app: ComfyApp) -> str:
    """V_PREDICTION_DDPM (k-diffusion states: a window over every step == ComfyUI's CFG) and IMG_TO_IMG_FLOW
    (sampling from an image: DNG refused with a sentence, windowed == ComfyUI's CFG), where this ComfyUI has them."""
    import comfy.model_sampling as ms

    from negguide.checks import SettingsError
    from negguide_comfyui.model_kind import model_kind

    m, pos, neg, empty = _setup(app, "sd1")
    found = []
    for type_name in ("V_PREDICTION_DDPM", "IMG_TO_IMG_FLOW"):
        prediction = getattr(ms, type_name, None)
        if prediction is None:
            continue
        base = ms.ModelSamplingDiscreteFlow if issubclass(prediction, ms.CONST) else ms.ModelSamplingDiscrete
        sampling = type("ModelSamplingAdvanced", (base, prediction), {})(m.model.model_config)
        patched = m.clone()
        patched.add_object_patch("model_sampling", sampling)
        kind = model_kind(patched)
        full = app.patch("NegGuideWindowedPatch", patched, empty, **WINDOW, window_start=1, window_end=3)[0]
        assert _equal(app.ksampler(full, pos, neg, "sd1"), app.ksampler(patched, pos, neg, "sd1")), type_name
        if type_name == "IMG_TO_IMG_FLOW":
            assert kind.starts_from_image
            try:
                app.patch("NegGuideDNGPatch", patched, empty, **DNG)
            except SettingsError as e:
                assert "samples from an image, not from noise" in str(e), str(e)
            else:
                raise AssertionError("DNG on IMG_TO_IMG_FLOW was not refused")
        else:
            assert not kind.frame.flow and not kind.starts_from_image
        found.append(type_name)
    return f"checked {found}" if found else "this ComfyUI has neither type (they came with v0.33)"


def main(argv: list[str]) -> int:
    app = ComfyApp(argv[1])
    failed = 0
    for name in argv[2:] or CHECKS:
        start = time.time()
        try:
            detail, ok = globals()[name](app), True
        except Exception as e:  # noqa: BLE001  (every failure is reported, then the next check runs)
            detail, ok = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}", False
        failed += not ok
        print(json.dumps({"check": name, "ok": ok, "detail": detail, "seconds": round(time.time() - start, 1)}),
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
