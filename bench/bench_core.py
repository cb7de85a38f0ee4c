"""Cost of negguide's per-step math relative to one UNet forward pass, measured in the same run.

    python bench/bench_core.py [--batch 2] [--size 64] [--device cpu]

Times (median of repeats) for one sampler step of an SD-shaped latent ``[B, 4, size/8, size/8]``:
the guidance rules alone, the DNG step (posterior update + scale + guided prediction) with each tracker, and
one forward of a small ``UNet2DConditionModel`` with random weights on ``2B`` rows (a CFG step). Prints each
as a ratio to that UNet forward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from negguide import guidance as G
from negguide.dng import DNGConfig, DynamicNegativeGuidance


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
    for tracker in ("transition", "flow-moment", "flow-hutchinson"):
        dng = DynamicNegativeGuidance(DNGConfig(tracker=tracker), b, stochastic_sampler=True, device=dev)
        probes = None
        if dng.extra_rows_per_image:
            v, pts = dng.probe_points(x, 3.0)
            probes = (v, pts, pts + 0.01)
        state = {"i": 0}

        def dng_step(dng=dng, probes=probes, state=state):
            state["i"] += 1
            lam = dng.step(state["i"], x, 10.0 / state["i"], p, n, probes=probes)
            return G.dng_text(e, p, n, 7.0, lam.to(x.dtype))

        rows[f"dng step ({tracker})"] = dng_step
    print(f"device {dev}, latent [{b}, 4, {side}, {side}], small UNet2DConditionModel forward on {2 * b} rows: "
          f"{unet_s * 1e3:.3f} ms")
    for name, fn in rows.items():
        s = timed(fn, args.repeats, dev)
        print(f"  {name:32s} {s * 1e3:8.3f} ms   {s / unet_s:6.3f} x one UNet forward")


if __name__ == "__main__":
    main()
