"""Per-step time of each negguide mode through the diffusers front-end against the pipeline's own CFG.

    python bench/bench_diffusers.py                       # small random SD-shaped UNet (64x64 px) on the CPU
    python bench/bench_diffusers.py --smoke               # tiny model, 3 steps, 1 round: does it run
    python bench/bench_diffusers.py --glue --steps 50     # the loop's own cost per step (denoiser made a no-op)
    python bench/bench_diffusers.py --size sd --device cuda --dtype float16 --steps 20 --batch 2
                                                          # SD-1.x-size UNet with random weights on a GPU

One pipeline (random weights built from configs, nothing downloaded) serves every mode: the pipeline's own
``pipe(...)`` with CFG and a negative prompt is the baseline, each negguide mode runs through
``NegGuidePipeline`` on the same modules, prompts, seeds, steps and batch. Runs are interleaved over
``--repeats`` rounds (round 0 warms up); a run's per-step time is the median interval between its step callbacks
(steady state: text encoding, decoding and one-off work excluded), and the table gives the median over rounds
and its ratio to the stock baseline of the same scheduler in the same run. Also reported: rows per denoiser call
and the time per step spent outside the denoiser (scheduler, guidance, glue). Targets (issue): windowed and
DNS <= 1.01x, DNG with its 3-row transition tracker <= 1.5x on a GPU (the Hutchinson flow tracker adds 2 probe
rows per image; the gated one only on the steps where an image probes, hence the mean rows per call).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "generate"))  # the tiny pipelines

from tiny_pipelines import BUILDERS  # noqa: E402

from negguide.generate import NegGuidePipeline  # noqa: E402
from negguide.generate.schedulers import make_scheduler  # noqa: E402

# (label, scheduler, mode or None for the pipeline's own CFG, options, target ratio)
MODES = [
    ("stock CFG (pipe)", "euler_a", None, {}, None),
    ("negguide off", "euler_a", "off", {}, 1.01),
    ("windowed, every step", "euler_a", "windowed", {"window": (0.0, 1.0, "fraction")}, 1.01),
    ("windowed, steps 5-15 of 30", "euler_a", "windowed", {}, 1.01),
    ("DNS", "euler_a", "dns", {}, 1.01),
    ("NP 3-term", "euler_a", "np3", {}, None),
    ("Perp-Neg", "euler_a", "perp_neg", {}, None),
    ("SLD", "euler_a", "sld", {}, None),
    ("DNG transition", "euler_a", "dng", {"dng": {"tracker": "transition"}}, 1.5),
    ("stock CFG (pipe), Euler", "euler", None, {}, None),
    ("DNG flow-moment, Euler", "euler", "dng", {"dng": {"tracker": "flow-moment"}}, 1.5),
    ("DNG flow-hutchinson, Euler", "euler", "dng", {"dng": {"tracker": "flow-hutchinson"}}, None),
    ("DNG flow-gated (auto), Euler", "euler", "dng", {"dng": {"tracker": "flow-gated"}}, None),
]


class StepTimer:
    """Step-end timestamps (diffusers' callback_on_step_end) and the time spent inside the denoiser."""

    def __init__(self, sync):
        self.sync, self.ends, self.inside_at_end, self.inside, self.row_counts = sync, [], [], 0.0, []

    def callback(self, pipe, i, t, kwargs):
        self.sync()
        self.ends.append(time.perf_counter())
        self.inside_at_end.append(self.inside)
        return {}

    def hook(self, module):
        def pre(mod, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
            self.row_counts.append(int(x.shape[0]))
            self.sync()
            self._t0 = time.perf_counter()

        def post(mod, args, kwargs, out):
            self.sync()
            self.inside += time.perf_counter() - self._t0

        return (module.register_forward_pre_hook(pre, with_kwargs=True),
                module.register_forward_hook(post, with_kwargs=True))

    def per_step(self) -> tuple[float, float]:
        """Median step duration and median time per step outside the denoiser (steady state: the median drops
        one-off work such as a branch's text encoding on its first use)."""
        steps = list(zip(self.ends, self.ends[1:], self.inside_at_end, self.inside_at_end[1:], strict=False))
        total = statistics.median(e1 - e0 for e0, e1, _, _ in steps)
        outside = statistics.median((e1 - e0) - (i1 - i0) for e0, e1, i0, i1 in steps)
        return total, outside


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=tuple(BUILDERS), default="sd")
    ap.add_argument("--size", choices=("tiny", "small", "sd"), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the CPU default: 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, 1 round")
    ap.add_argument("--glue", action="store_true",
                    help="replace the denoiser by a no-op: what remains per step is the host-side cost of the loop "
                         "(pipeline or negguide: scheduler, guidance, bookkeeping), free of the model's timing noise")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    a = ap.parse_args(argv)
    if a.smoke:
        a.size, a.steps, a.repeats = "tiny", 3, 1
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    base = BUILDERS[a.family](a.size).to(a.device, getattr(torch, a.dtype))
    side = {"tiny": 8, "small": 32, "sd": 64}[a.size] * base.vae_scale_factor
    flow = a.family == "sd3"
    modes = [(label, "flow_euler" if flow else sched, mode, opts, target) for label, sched, mode, opts, target in MODES
             if not (flow and mode == "sld") and not (flow and sched == "euler")]
    if a.glue:
        denoiser = base.transformer if flow else base.unet
        denoiser.forward = lambda *args, **kw: ((args[0] if args else kw["hidden_states"]) * 0.5,)
    pipes = {}
    for _, sched, _, _, _ in modes:
        if sched not in pipes:
            pipes[sched] = NegGuidePipeline.from_pipe(base, scheduler=make_scheduler(sched, base.scheduler))
            pipes[sched].set_progress_bar_config(disable=True)
    prompt, negative = ["a red car on a street"] * a.batch, ["rust, dents"] * a.batch
    times = {label: [] for label, *_ in modes}
    glue = {label: [] for label, *_ in modes}
    rows = {}
    for rnd in range(a.repeats + 1):  # round 0 warms up
        for label, sched, mode, opts, _ in modes:
            ng = pipes[sched]
            timer = StepTimer(sync)
            hooks = timer.hook(ng.family.denoiser)
            gens = [torch.Generator().manual_seed(i) for i in range(a.batch)]
            kw = dict(num_inference_steps=a.steps, guidance_scale=7.0, height=side, width=side, generator=gens,
                      output_type="latent", callback_on_step_end=timer.callback)
            with torch.inference_mode():
                if mode is None:
                    ng.pipe(prompt, negative_prompt=negative, **kw)
                else:
                    ng(prompt, negative, mode=mode, **opts, **kw)
            for h in hooks:
                h.remove()
            rows[label] = sum(timer.row_counts) / len(timer.row_counts)  # the gated tracker varies per call
            if rnd:
                total, outside = timer.per_step()
                times[label].append(total)
                glue[label].append(outside)
    gpu = torch.cuda.get_device_name() if a.device.startswith("cuda") else None
    result = {"family": a.family, "size": a.size, "device": a.device, "gpu": gpu, "dtype": a.dtype, "steps": a.steps,
              "batch": a.batch, "repeats": a.repeats, "glue_only": a.glue, "torch": torch.__version__, "modes": {}}
    print(f"{a.family} {a.size} ({side}x{side} px), {a.device} {gpu or ''} {a.dtype}, {a.steps} steps, batch "
          f"{a.batch}, median of {a.repeats} interleaved rounds{', denoiser replaced by a no-op' if a.glue else ''}")
    if a.glue:
        print("| mode | rows per call (mean) | host cost, us / step (median) | "
              "extra over the pipeline's loop, us / step |")
        print("| --- | --- | --- | --- |")
    else:
        print("| mode | rows per call (mean) | ms / step, median | vs stock (same scheduler) | target | "
              "ms / step, best | best vs stock | outside the denoiser, ms / step |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    baseline = best_baseline = None
    for label, sched, mode, _, target in modes:
        med, best = statistics.median(times[label]), min(times[label])
        if mode is None:
            baseline, best_baseline = med, best
        ratio = med / baseline
        outside = statistics.median(glue[label])
        result["modes"][label] = {"scheduler": sched, "rows": rows[label], "ms_per_step": 1e3 * med, "ratio": ratio,
                                  "best_ms_per_step": 1e3 * best, "best_ratio": best / best_baseline,
                                  "target": target, "outside_ms_per_step": 1e3 * outside,
                                  "all_ms": [1e3 * t for t in times[label]]}
        if a.glue:
            print(f"| {label} | {rows[label]:.2f} | {1e6 * med:.0f} | {1e6 * (med - baseline):+.0f} |")
        else:
            target_text = f"<= {target}x" if target else ""
            print(f"| {label} | {rows[label]:.2f} | {1e3 * med:.2f} | {ratio:.3f}x | {target_text} "
                  f"| {1e3 * best:.2f} | {best / best_baseline:.3f}x | {1e3 * outside:.2f} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
