"""Cost of negguide's per-step math relative to one UNet forward pass, measured in the same run.

    python bench/bench_core.py [--batch 2] [--size 64] [--device cpu]

Times (median of repeats) for one sampler step of an SD-shaped latent ``[B, 4, size/8, size/8]``:
the guidance rules alone, one full step of the sampler-facing core (``GuidanceRun.plan`` + ``combine``:
step bookkeeping, window, posterior update, probe points, guided prediction) for every mode and DNG tracker,
and one forward of a small ``UNet2DConditionModel`` with random weights on ``2B`` rows (a CFG step). Prints
each as a ratio to that UNet forward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from negguide import guidance as G
from negguide.configs import DNGConfig
from negguide.frames import Frame
from negguide.run import GuidanceRun
from negguide.samplers import SamplerInfo
from negguide.spec import GuidanceSpec
from negguide.windows import StepWindow


def timed(fn, repeats: int, device: str) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def small_unet(device: str):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16).to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels; latent side = size / 8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    b, side, dev = args.batch, args.size // 8, args.device
    x = torch.randn(b, 4, side, side, device=dev)
    e, p, n = (torch.randn_like(x) for _ in range(3))
    unet = small_unet(dev)
    ctx = torch.randn(2 * b, 77, 32, device=dev)
    t = torch.full((2 * b,), 500, device=dev)

    with torch.no_grad():
        unet_s = timed(lambda: unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample, args.repeats, dev)
    rows = {
        "cfg": lambda: G.cfg(e, p, 7.0),
        "negative_prompt_3term": lambda: G.negative_prompt_3term(e, p, n, 7.0),
        "diffusion_negative": lambda: G.diffusion_negative(e, p, 3.0),
        "perp_neg": lambda: G.perp_neg(e, p, n, 7.0, 1.0),
    }
    specs = {
        "np, windowed": (GuidanceSpec("np", 7.0, window=StepWindow(5, 15)), False),
        "dns": (GuidanceSpec("dns", 7.0), False),
        "sld": (GuidanceSpec("sld", 7.0), False),
        "perp_neg": (GuidanceSpec("perp_neg", 7.0), False),
        "dng, transition": (GuidanceSpec("dng", 7.0, dng=DNGConfig(tracker="transition")), True),
        "dng, flow-moment": (GuidanceSpec("dng", 7.0, dng=DNGConfig(tracker="flow-moment")), False),
        "dng, flow-hutchinson": (GuidanceSpec("dng", 7.0, dng=DNGConfig(tracker="flow-hutchinson")), False),
    }
    preds = {"positive": p, "negative": n, "empty": e}
    for name, (spec, stochastic) in specs.items():
        run = GuidanceRun(spec, b, Frame.k_diffusion(), SamplerInfo(stochastic), steps=10**9)
        state = {"sigma": 10.0}

        def core_step(run=run, state=state):
            state["sigma"] *= 0.999
            plan = run.plan(x, state["sigma"])
            return run.combine(plan, {r: preds[r.branch] for r in plan.groups})

        rows[f"core step ({name})"] = core_step
    print(f"device {dev}, latent [{b}, 4, {side}, {side}], small UNet2DConditionModel forward on {2 * b} rows: "
          f"{unet_s * 1e3:.3f} ms")
    for name, fn in rows.items():
        s = timed(fn, args.repeats, dev)
        print(f"  {name:32s} {s * 1e3:8.3f} ms   {s / unet_s:6.3f} x one UNet forward")


if __name__ == "__main__":
    main()
