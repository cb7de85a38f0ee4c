"""The node pack in a real ComfyUI server, through its HTTP API (``/prompt``, ``/history``, ``/interrupt``), with a
random-weight full-size SD1.5 checkpoint. Runs only when ``COMFYUI_DIR`` points to a ComfyUI checkout:

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/venv/bin/python \\
    COMFYUI_CKPT=/path/to/sd15-random-fp16.safetensors  bash run.sh test tests/comfyui/test_comfyui_integration.py

Without ``COMFYUI_CKPT`` the checkpoint is built first with ComfyUI's own classes (``random_checkpoint.py``,
~2.1 GB, about a minute). Latents are read back bit-exact (``SaveLatent``); every successful prompt's part of the
server log must be free of tracebacks and errors.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from comfyui_server import Graph, Server, default_python
from example_workflows import EXAMPLES, SD15_EXAMPLES

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = [pytest.mark.skipif(not COMFYUI_DIR, reason="COMFYUI_DIR is not set (no real ComfyUI to test against)"),
              pytest.mark.slow]
HERE = Path(__file__).resolve().parent
STEPS, CFG, SEED = 2, 6.0, 1234
DNG = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8, "tracker": "auto"}
OURS = {f"NegGuide{m}{k}" for m in ("Windowed", "DNG", "DNS", "SLD", "PerpNeg", "Adaptive", "ConstantNegative")
        for k in ("Guider", "Patch")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    if os.environ.get("COMFYUI_CKPT"):
        return Path(os.environ["COMFYUI_CKPT"]).resolve()
    out = tmp_path_factory.mktemp("ckpt") / "sd15-random-fp16.safetensors"
    subprocess.run([default_python(), str(HERE / "random_checkpoint.py"), COMFYUI_DIR, str(out)], check=True,
                   timeout=1800)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoint):
    s = Server(COMFYUI_DIR, tmp_path_factory.mktemp("comfy"), checkpoint, default_python()).start()
    yield s
    s.stop()


# --- workflow pieces ------------------------------------------------------------------------------------------
def scene(g: Graph, server: Server, batch: int = 1) -> SimpleNamespace:
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=server.checkpoint)

    def text(t):
        return [g.add("CLIPTextEncode", clip=[ckpt, 1], text=t), 0]

    return SimpleNamespace(model=[ckpt, 0], clip=[ckpt, 1], pos=text("a red car"), neg=text("rust"), empty=text(""),
                           latent=[g.add("EmptyLatentImage", width=64, height=64, batch_size=batch), 0])


def ksampler(g, model, pos, neg, latent, sampler="euler", steps=STEPS, cfg=CFG, seed=SEED):
    return [g.add("KSampler", model=model, positive=pos, negative=neg, latent_image=latent, seed=seed, steps=steps,
                  cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=1.0), 0]


def custom(g, s, guider, sampler="euler", steps=STEPS, seed=SEED):
    sigmas = [g.add("BasicScheduler", model=s.model, scheduler="normal", steps=steps, denoise=1.0), 0]
    return [g.add("SamplerCustomAdvanced", noise=[g.add("RandomNoise", noise_seed=seed), 0], guider=guider,
                  sampler=[g.add("KSamplerSelect", sampler_name=sampler), 0], sigmas=sigmas,
                  latent_image=s.latent), 0]


def save(g, latent, name):
    return g.add("SaveLatent", samples=latent, filename_prefix=f"negguide_it/{name}")


def patch(g, s, node, **values):
    return g.add(f"NegGuide{node}Patch", model=s.model, empty_conditioning=s.empty, **values)


def window(start, end):
    return {"form": "2-term", "window_unit": "steps", "window_start": start, "window_end": end}


def run(server, g):
    result = server.run(g)
    result.assert_clean()
    return result


# --- tests ------------------------------------------------------------------------------------------------------
def test_the_pack_loads_and_registers_every_node(server):
    info = server.get("/object_info")
    assert OURS | {"NegGuidePlot"} <= set(info)
    assert info["NegGuideDNGPatch"]["output"] == ["MODEL", "NEGGUIDE_TRACE"]
    startup = server.log_text().split("Starting server")[0]
    assert "custom_nodes/negguide" in startup
    assert not [line for line in startup.splitlines() if "IMPORT FAILED" in line and "negguide" in line]


def test_loading_the_pack_changes_nothing(server, checkpoint, tmp_path_factory):
    """Stock KSampler with the pack loaded == a server started with every custom node disabled."""
    g = Graph()
    s = scene(g, server)
    node = save(g, ksampler(g, s.model, s.pos, s.neg, s.latent, "euler_ancestral"), "stock")
    with_pack = run(server, g).latent(node)
    bare = Server(COMFYUI_DIR, tmp_path_factory.mktemp("bare"), checkpoint, default_python(), with_nodes=False)
    bare.start()
    try:
        assert "NegGuideDNGPatch" not in bare.get("/object_info")
        assert torch.equal(run(bare, g).latent(node), with_pack)
    finally:
        bare.stop()


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m"])
def test_slot_modes_are_comfyuis_cfg_bit_for_bit(server, sampler):
    g = Graph()
    s = scene(g, server)
    k = {name: save(g, ksampler(g, model, pos, neg, s.latent, sampler), name) for name, (model, pos, neg) in {
        "stock": (s.model, s.pos, s.neg),
        "stock_empty": (s.model, s.pos, s.empty),
        "stock_swapped": (s.model, s.empty, s.pos),
        "full_window": ([patch(g, s, "Windowed", **window(1, STEPS)), 0], s.pos, s.neg),
        "empty_window": ([patch(g, s, "Windowed", **window(STEPS + 1, STEPS)), 0], s.pos, s.neg),
        "dng_off": ([patch(g, s, "DNG", **{**DNG, "lambda0": 0.0}), 0], s.pos, s.neg),
        "dns": ([patch(g, s, "DNS"), 0], s.pos, s.neg),
    }.items()}
    guiders = {
        "cfg_guider": g.add("CFGGuider", model=s.model, positive=s.pos, negative=s.neg, cfg=CFG),
        "window_guider": g.add("NegGuideWindowedGuider", model=s.model, positive=s.pos, negative=s.neg,
                               empty_conditioning=s.empty, cfg=CFG, **window(1, STEPS)),
        "cfg_guider_swapped": g.add("CFGGuider", model=s.model, positive=s.empty, negative=s.pos, cfg=CFG),
        "dns_guider": g.add("NegGuideDNSGuider", model=s.model, positive=s.pos, empty_conditioning=s.empty,
                            dns_scale=CFG - 1),
    }
    c = {name: save(g, custom(g, s, [node, 0], sampler), name) for name, node in guiders.items()}
    r = run(server, g)
    latent = {**{n: r.latent(v) for n, v in k.items()}, **{n: r.latent(v) for n, v in c.items()}}
    assert not torch.equal(latent["stock"], latent["stock_empty"])  # the negative prompt matters
    assert torch.equal(latent["full_window"], latent["stock"]), "window over every step != plain negative"
    assert torch.equal(latent["empty_window"], latent["stock_empty"]), "empty window != empty negative"
    assert torch.equal(latent["dng_off"], latent["stock_empty"]), "DNG lambda0 = 0 != empty negative"
    assert torch.equal(latent["dns"], latent["stock_swapped"]), "DNS != swapped prompts at s = cfg - 1"
    assert torch.equal(latent["window_guider"], latent["cfg_guider"]), "windowed guider != CFGGuider"
    assert torch.equal(latent["dns_guider"], latent["cfg_guider_swapped"]), "DNS guider != swapped CFGGuider"


def test_guider_and_ksampler_patch_sample_the_same(server):
    g = Graph()
    s = scene(g, server)
    guider = g.add("NegGuideDNGGuider", model=s.model, positive=s.pos, negative=s.neg, empty_conditioning=s.empty,
                   cfg=CFG, **DNG)
    a = save(g, custom(g, s, [guider, 0], "euler_ancestral"), "dng_guider")
    b = save(g, ksampler(g, [patch(g, s, "DNG", **DNG), 0], s.pos, s.neg, s.latent, "euler_ancestral"), "dng_patch")
    r = run(server, g)
    assert torch.equal(r.latent(a), r.latent(b))


def test_batches_keep_per_image_state(server):
    """Image i's result depends on its own noise only: the same at another position in the batch and next to
    another image, exactly (DNG with Hutchinson probes, one probe generator per image)."""
    g = Graph()
    s = scene(g, server, batch=3)
    one = {i: [g.add("LatentFromBatch", samples=s.latent, batch_index=i, length=1), 0] for i in range(3)}

    def pair(i, j):
        return [g.add("LatentBatch", samples1=one[i], samples2=one[j]), 0]

    dng = [patch(g, s, "DNG", **DNG), 0]
    nodes = {name: save(g, ksampler(g, dng, s.pos, s.neg, latent), name)
             for name, latent in {"01": pair(0, 1), "10": pair(1, 0), "02": pair(0, 2)}.items()}
    r = run(server, g)
    a, b, c = (r.latent(nodes[n]) for n in ("01", "10", "02"))
    assert torch.equal(a[1], b[0]) and torch.equal(a[0], b[1]), "an image's result depends on its position"
    assert torch.equal(a[0], c[0]), "an image's result depends on the other image of its batch"


def test_an_interrupted_prompt_leaves_nothing_behind(server):
    def graph(long: bool, repeat: bool):
        g = Graph()
        s = scene(g, server)
        dng = patch(g, s, "DNG", **DNG)
        latent = [g.add("RepeatLatentBatch", samples=s.latent, amount=1), 0] if repeat else s.latent
        out = ksampler(g, [dng, 0], s.pos, s.neg, latent, "euler", steps=30 if long else STEPS)
        plot = g.add("NegGuidePlot", trace=[dng, 1], samples=out, width=640)
        return g, save(g, out, "interrupt"), g.add("PreviewAny", source=[plot, 1])

    first, node, _ = graph(long=False, repeat=True)  # the same patch node (cached) in all three prompts
    reference = run(server, first).latent(node)
    long_graph, _, _ = graph(long=True, repeat=False)
    before = len(server.log_text())
    prompt = server.submit(long_graph)
    deadline = time.time() + 600
    while "/30 [" not in server.log_text()[before:] and time.time() < deadline:  # the sampler has started
        time.sleep(0.2)
    server.post("/interrupt", {})
    interrupted = server.wait(prompt)
    assert "execution_interrupted" in {m[0] for m in interrupted["status"]["messages"]}
    again, node, text = graph(long=False, repeat=False)
    r = run(server, again)
    assert torch.equal(r.latent(node), reference)
    assert r.text(text).count("pass ") == 1  # the plot shows this prompt's pass only


def test_two_patched_models_in_one_graph_share_nothing(server):
    def graph(which, again=False):
        g = Graph()
        s = scene(g, server)
        # the same latent through a no-op node: another input signature, so ComfyUI samples again instead of
        # answering from its cache (the patch nodes themselves stay cached and are reused)
        latent = [g.add("RepeatLatentBatch", samples=s.latent, amount=1), 0] if again else s.latent
        out = {}
        if "dng" in which:
            out["dng"] = save(g, ksampler(g, [patch(g, s, "DNG", **DNG), 0], s.pos, s.neg, latent), "two_dng")
        if "window" in which:
            model = [patch(g, s, "Windowed", **window(2, 2)), 0]
            out["window"] = save(g, ksampler(g, model, s.pos, s.neg, latent, seed=SEED + 1), "two_window")
        return g, out

    both_graph, both = graph(("dng", "window"))
    r = run(server, both_graph)
    for name in ("dng", "window"):
        single_graph, single = graph((name,), again=True)
        assert torch.equal(run(server, single_graph).latent(single[name]), r.latent(both[name])), name


@pytest.mark.parametrize("sampler,tracker", [("euler_ancestral", "transition"), ("dpmpp_2m", "flow-gated"),
                                             ("heun", "flow-gated"), ("dpmpp_sde", "transition"),
                                             ("lcm", "transition"), ("uni_pc", "flow-gated"),
                                             ("ddim", "flow-gated")])
def test_every_sampler_family_gets_its_tracker(server, sampler, tracker):
    g = Graph()
    s = scene(g, server)
    dng = patch(g, s, "DNG", **DNG)
    out = ksampler(g, [dng, 0], s.pos, s.neg, s.latent, sampler)
    plot = g.add("NegGuidePlot", trace=[dng, 1], samples=out, width=640)
    text = g.add("PreviewAny", source=[plot, 1])
    summary = run(server, g).text(text)
    assert f"tracker {tracker}" in summary and f"{STEPS} steps" in summary, summary


def test_the_plot_is_an_image_of_every_image_of_the_batch(server):
    g = Graph()
    s = scene(g, server, batch=2)
    dng = patch(g, s, "DNG", **DNG)
    out = ksampler(g, [dng, 0], s.pos, s.neg, s.latent, "euler_ancestral")
    plot = g.add("NegGuidePlot", trace=[dng, 1], samples=out, width=768)
    image = g.add("SaveImage", images=[plot, 0], filename_prefix="negguide_it/plot")
    text = g.add("PreviewAny", source=[plot, 1])
    r = run(server, g)
    from PIL import Image

    assert Image.open(r.image_path(image)).size == (768, 236)
    assert "batch 2" in r.text(text) and "tracker transition" in r.text(text)


@pytest.mark.parametrize("case", ["bad_window", "nan_setting", "no_empty_prompt"])
def test_the_queue_refuses_bad_settings_with_the_reason(server, case):
    """The nodes' VALIDATE_INPUTS: /prompt answers 400 with the node's sentence before anything runs."""
    g = Graph()
    s = scene(g, server)
    if case == "bad_window":
        model, expected = [patch(g, s, "Windowed", **window(0, 2)), 0], "step windows count from step 1"
    elif case == "nan_setting":
        model, expected = [patch(g, s, "DNG", **{**DNG, "lambda0": float("nan")}), 0], "lambda0 must be a finite number"
    else:
        model = [g.add("NegGuideWindowedPatch", model=s.model, **window(1, 2)), 0]
        expected = "connect the checkpoint's CLIP to 'clip'"
    save(g, ksampler(g, model, s.pos, s.neg, s.latent), "refused")
    with pytest.raises(AssertionError, match="HTTP 400") as refused:
        server.submit(g)
    assert expected in str(refused.value), str(refused.value)
    follow = Graph()
    t = scene(follow, server)
    save(follow, ksampler(follow, t.model, t.pos, t.neg, t.latent, seed=SEED + 5), "after_queue_refusal")
    run(server, follow)  # the server goes on


def test_the_empty_prompt_from_clip_and_the_adaptive_and_constant_nodes(server):
    """A patch given only the checkpoint's CLIP == the same patch given CLIP Text Encode(""); the adaptive window with
    signal none == the Windowed node; constant negative guidance at 0 == the empty negative prompt; bit for bit."""
    g = Graph()
    s = scene(g, server)
    adaptive = {"window_unit": "steps", "window_start": 1, "window_end": 1, "signal": "none", "threshold": 0.5}
    models = {
        "given": [patch(g, s, "Windowed", **window(1, 1)), 0],
        "from_clip": [g.add("NegGuideWindowedPatch", model=s.model, clip=s.clip, **window(1, 1)), 0],
        "adaptive": [g.add("NegGuideAdaptivePatch", model=s.model, clip=s.clip, **adaptive), 0],
        "constant_zero": [g.add("NegGuideConstantNegativePatch", model=s.model, clip=s.clip, negative_scale=0.0), 0],
    }
    nodes = {name: save(g, ksampler(g, model, s.pos, s.neg, s.latent, "euler_ancestral"), name)
             for name, model in models.items()}
    nodes["stock_empty"] = save(g, ksampler(g, s.model, s.pos, s.empty, s.latent, "euler_ancestral"), "stock_empty")
    r = run(server, g)
    latent = {name: r.latent(node) for name, node in nodes.items()}
    assert not torch.equal(latent["given"], latent["stock_empty"])  # the window's step matters
    assert torch.equal(latent["from_clip"], latent["given"]), "clip-encoded empty prompt != CLIP Text Encode(\"\")"
    assert torch.equal(latent["adaptive"], latent["given"]), "adaptive (signal none) != windowed"
    assert torch.equal(latent["constant_zero"], latent["stock_empty"]), "constant negative 0 != empty negative"


@pytest.mark.parametrize("case", ["guider_without_negative"])
def test_refusals_stop_the_prompt_with_the_reason(server, case):
    g = Graph()
    s = scene(g, server)
    guider = g.add("BasicGuider", model=[patch(g, s, "DNG", **DNG), 0], conditioning=s.pos)
    save(g, custom(g, s, [guider, 0]), "refused")
    expected = "the BasicGuider node has no negative"
    r = server.run(g)
    assert r.status == "error" and expected in r.error, r.error
    assert "SettingsError" in r.error
    follow = Graph()
    t = scene(follow, server)
    save(follow, ksampler(follow, t.model, t.pos, t.neg, t.latent, seed=SEED + 7), "after_refusal")
    run(server, follow)  # the server goes on


@pytest.mark.parametrize("name", SD15_EXAMPLES)
def test_the_example_workflows_run(server, name):
    """examples/comfyui as they are, with the test checkpoint, 2 steps and small latents."""
    size = 128 if name == "windowed_hires" else 64  # the hires pass upscales the latent by 1.5
    result = run(server, EXAMPLES[name](checkpoint=server.checkpoint, steps=STEPS, size=size))
    images = [o for o in result.entry["outputs"].values() if "images" in o]
    assert images and all(o["images"] for o in images)
