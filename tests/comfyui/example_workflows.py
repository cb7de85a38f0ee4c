"""The example workflows of ``examples/comfyui/``, as API-format graphs.

``frontend.py`` loads each into ComfyUI's real frontend and saves the frontend's own workflow export (the files
users drag into ComfyUI) to ``examples/comfyui/<name>.json``; ``test_comfyui_integration.py`` runs the SD1.5 ones
in a real server with the test checkpoint, 2 steps and 64x64 latents. Checkpoint names are the ones ComfyUI's own
example pages use; pick yours in the loader.
"""

from __future__ import annotations

from comfyui_server import Graph

SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
SD35 = "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"
DNG = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8, "tracker": "auto"}


def _start(g: Graph, checkpoint: str, positive: str, negative: str):
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=checkpoint)

    def text(t):
        return [g.add("CLIPTextEncode", clip=[ckpt, 1], text=t), 0]

    return ckpt, text(positive), text(negative), text("")


def _finish(g: Graph, ckpt: str, latent, prefix: str, trace=None):
    g.add("SaveImage", images=[g.add("VAEDecode", samples=latent, vae=[ckpt, 2]), 0], filename_prefix=prefix)
    if trace is not None:
        plot = g.add("NegGuidePlot", trace=trace, samples=latent, width=768)
        g.add("PreviewImage", images=[plot, 0])


def dng_ksampler(checkpoint=SD15, steps=30, size=512) -> Graph:
    """DNG on the plain KSampler: the model patch between the checkpoint and the sampler."""
    g = Graph()
    ckpt, pos, neg, empty = _start(g, checkpoint, "a photograph of a dog in a city park, golden hour", "leash")
    dng = g.add("NegGuideDNGPatch", model=[ckpt, 0], empty_conditioning=empty, **DNG)
    latent = [g.add("EmptyLatentImage", width=size, height=size, batch_size=2), 0]
    out = [g.add("KSampler", model=[dng, 0], positive=pos, negative=neg, latent_image=latent, seed=42, steps=steps,
                 cfg=7.5, sampler_name="euler_ancestral", scheduler="normal", denoise=1.0), 0]
    _finish(g, ckpt, out, "negguide/dng", trace=[dng, 1])
    return g


def dng_guider(checkpoint=SD15, steps=30, size=512) -> Graph:
    """DNG as a GUIDER for SamplerCustomAdvanced, with a deterministic sampler (probability-flow tracker)."""
    g = Graph()
    ckpt, pos, neg, empty = _start(g, checkpoint, "a cozy living room, interior photograph", "television")
    guider = g.add("NegGuideDNGGuider", model=[ckpt, 0], positive=pos, negative=neg, empty_conditioning=empty,
                   cfg=7.0, **DNG)
    out = [g.add("SamplerCustomAdvanced", noise=[g.add("RandomNoise", noise_seed=7), 0], guider=[guider, 0],
                 sampler=[g.add("KSamplerSelect", sampler_name="dpmpp_2m"), 0],
                 sigmas=[g.add("BasicScheduler", model=[ckpt, 0], scheduler="karras", steps=steps, denoise=1.0), 0],
                 latent_image=[g.add("EmptyLatentImage", width=size, height=size, batch_size=1), 0]), 0]
    _finish(g, ckpt, out, "negguide/dng_guider", trace=[guider, 1])
    return g


def windowed_hires(checkpoint=SD15, steps=30, size=512) -> Graph:
    """Ban et al.'s window (steps 5-15 of 30) in the first pass, and a window of its own in the hires pass."""
    g = Graph()
    ckpt, pos, neg, empty = _start(g, checkpoint, "a medieval feast in a great hall, oil painting", "people")
    first = g.add("NegGuideWindowedPatch", model=[ckpt, 0], empty_conditioning=empty, form="2-term",
                  window_unit="steps", window_start=5, window_end=15)
    base = [g.add("KSampler", model=[first, 0], positive=pos, negative=neg, seed=3, steps=steps, cfg=7.0,
                  latent_image=[g.add("EmptyLatentImage", width=size, height=size, batch_size=1), 0],
                  sampler_name="dpmpp_2m", scheduler="karras", denoise=1.0), 0]
    hires = g.add("NegGuideWindowedPatch", model=[ckpt, 0], empty_conditioning=empty, form="2-term",
                  window_unit="fraction", window_start=0.0, window_end=0.5)
    upscaled = [g.add("LatentUpscaleBy", samples=base, upscale_method="nearest-exact", scale_by=1.5), 0]
    out = [g.add("KSampler", model=[hires, 0], positive=pos, negative=neg, latent_image=upscaled, seed=3,
                 steps=max(steps // 2, 1), cfg=7.0, sampler_name="dpmpp_2m", scheduler="karras", denoise=0.5), 0]
    _finish(g, ckpt, out, "negguide/windowed_hires", trace=[hires, 1])
    plot = g.add("NegGuidePlot", trace=[first, 1], samples=base, width=768)
    g.add("PreviewImage", images=[plot, 0])
    return g


def dns_explore(checkpoint=SD15, steps=30, size=512) -> Graph:
    """Diffusion-negative sample: what the model considers least like the prompt (a source of negative prompts)."""
    g = Graph()
    ckpt, pos, _, empty = _start(g, checkpoint, "a bowl of fresh fruit on a wooden table", "")
    guider = g.add("NegGuideDNSGuider", model=[ckpt, 0], positive=pos, empty_conditioning=empty, dns_scale=6.0)
    out = [g.add("SamplerCustomAdvanced", noise=[g.add("RandomNoise", noise_seed=11), 0], guider=[guider, 0],
                 sampler=[g.add("KSamplerSelect", sampler_name="euler"), 0],
                 sigmas=[g.add("BasicScheduler", model=[ckpt, 0], scheduler="normal", steps=steps, denoise=1.0), 0],
                 latent_image=[g.add("EmptyLatentImage", width=size, height=size, batch_size=4), 0]), 0]
    _finish(g, ckpt, out, "negguide/dns")
    return g


def sdxl_dng(checkpoint=SDXL, steps=30, size=1024) -> Graph:
    """DNG with SDXL on an SDE sampler (transition-likelihood tracker)."""
    g = Graph()
    ckpt, pos, neg, empty = _start(g, checkpoint, "a lighthouse on a cliff at dusk, dramatic sky", "clouds")
    dng = g.add("NegGuideDNGPatch", model=[ckpt, 0], empty_conditioning=empty, **DNG)
    out = [g.add("KSampler", model=[dng, 0], positive=pos, negative=neg, seed=5, steps=steps, cfg=6.0,
                 latent_image=[g.add("EmptyLatentImage", width=size, height=size, batch_size=1), 0],
                 sampler_name="dpmpp_2m_sde", scheduler="karras", denoise=1.0), 0]
    _finish(g, ckpt, out, "negguide/sdxl_dng", trace=[dng, 1])
    return g


def sd3_windowed(checkpoint=SD35, steps=28, size=1024) -> Graph:
    """SD3.5 (rectified flow): a window in ComfyUI's sigmas (the flow time t), 0.9 down to 0.4."""
    g = Graph()
    ckpt, pos, neg, empty = _start(g, checkpoint, "a red vintage car parked on a cobblestone street", "rust")
    window = g.add("NegGuideWindowedPatch", model=[ckpt, 0], empty_conditioning=empty, form="2-term",
                   window_unit="sigma", window_start=0.9, window_end=0.4)
    out = [g.add("KSampler", model=[window, 0], positive=pos, negative=neg, seed=9, steps=steps, cfg=4.5,
                 latent_image=[g.add("EmptySD3LatentImage", width=size, height=size, batch_size=1), 0],
                 sampler_name="euler", scheduler="sgm_uniform", denoise=1.0), 0]
    _finish(g, ckpt, out, "negguide/sd3_windowed", trace=[window, 1])
    return g


EXAMPLES = {f.__name__: f for f in (dng_ksampler, dng_guider, windowed_hires, dns_explore, sdxl_dng, sd3_windowed)}
SD15_EXAMPLES = ("dng_ksampler", "dng_guider", "windowed_hires", "dns_explore")
SHOWN = ("dng_ksampler", "windowed_hires")  # screenshots of the whole graph for docs/comfyui.md
