"""Per-step time of each negguide WebUI mode against stock CFG, through the A1111-1.10-mirroring harness.

    python bench/bench_webui.py                      # tiny random UNet on the CPU (1 thread)
    python bench/bench_webui.py --size sd --device cuda --dtype float16 --steps 20 --batch 2
                                                     # SD-1.x-size UNet with random weights on a GPU

Every mode runs the same sampler (Euler a), seeds, steps and batch; runs are interleaved over ``--repeats``
rounds and the median per-step sampling time (``process_before_every_sampling`` to ``postprocess_batch``) is
reported with its ratio to stock CFG (the extension not loaded). Targets (issue 3): windowed and DNS
<= 1.01x, DNG <= 1.5x (three UNet rows instead of two per image, in one call). The Hutchinson flow tracker
(the core's choice for deterministic samplers) adds two probe rows per image and is reported separately.
Writes JSON to ``--out`` if given.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the stand-ins' schedule lookups
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "webui"))  # the WebUI stand-ins

from harness import a1111 as H  # noqa: E402
from harness.tinysd import TinySD  # noqa: E402

from negguide_webui.extension import Backend, NegGuideAlwaysOn  # noqa: E402
from negguide_webui.settings import ARG_NAMES, MODE_DNG, MODE_DNS, MODE_OFF, MODE_WINDOWED, NegGuideSettings  # noqa: E402

MODES = [
    ("stock CFG", None),
    ("extension loaded, off", NegGuideSettings(mode=MODE_OFF)),
    ("windowed negative", NegGuideSettings(mode=MODE_WINDOWED, window_start=1, window_end=10**6)),
    ("DNS", NegGuideSettings(mode=MODE_DNS)),
    ("DNG transition", NegGuideSettings(mode=MODE_DNG, tracker="transition")),
    ("DNG flow-moment", NegGuideSettings(mode=MODE_DNG, tracker="flow-moment")),
    ("DNG flow-hutchinson", NegGuideSettings(mode=MODE_DNG, tracker="flow-hutchinson")),
    ("DNG flow-gated", NegGuideSettings(mode=MODE_DNG, tracker="flow-gated")),
]


class Timer:
    n_args = 0

    def __init__(self, sync):
        self.sync, self.times = sync, []

    def process_before_every_sampling(self, p, **kw):
        self.sync()
        self.t0 = time.perf_counter()

    def postprocess_batch(self, p, images, **kw):
        self.sync()
        self.times.append(time.perf_counter() - self.t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("tiny", "small", "sd"), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    model = TinySD(seed=0, size=a.size, device=a.device, dtype=dtype)
    webui = H.WebUI(model)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    class Script(NegGuideAlwaysOn):
        n_args = len(ARG_NAMES)

        @staticmethod
        def backend_factory():
            return Backend(
                webui.callbacks,
                webui.state,
                lambda p, hr: p.sd_model.get_learned_conditioning([""], width=p.width, height=p.height),
            )

    size = {"tiny": 64, "small": 256, "sd": 512}[a.size]
    per_mode = {name: [] for name, _ in MODES}
    cb_time = {name: [] for name, _ in MODES}
    rows = {}
    for rep in range(a.repeats + 1):  # round 0 warms up
        for name, s in MODES:
            timer = Timer(sync)
            scripts = [timer] if s is None else [Script(), timer]
            args = [] if s is None else s.to_args()
            p = H.Processing(
                webui,
                steps=a.steps,
                batch_size=a.batch,
                sampler_name="Euler a",
                width=size,
                height=size,
                prompt="a red car",
                negative_prompt="rust",
                cfg_scale=7.0,
            )
            p.scripts = H.ScriptRunner(scripts, args)
            model.reset_logs()
            webui.callbacks.seconds = 0.0
            with torch.inference_mode():
                H.process_images(p)
            rows[name] = sum(model.rows_log) / len(model.rows_log) if model.rows_log else 0
            if rep:
                per_mode[name].append(timer.times[0] / a.steps)
                cb_time[name].append(webui.callbacks.seconds / a.steps)
    # the fastest of the rounds: other load on the machine only ever adds time
    base = min(per_mode["stock CFG"])
    result = {
        "size": a.size,
        "device": a.device,
        "dtype": a.dtype,
        "steps": a.steps,
        "batch": a.batch,
        "repeats": a.repeats,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
        "modes": {},
    }
    print(
        f"| mode | UNet rows per call (batch {a.batch}, mean) | ms / step (best of {a.repeats}) | vs stock CFG "
        "| extension callbacks, ms / step | (base + callbacks) / base |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, _ in MODES:
        best = min(per_mode[name])
        cb = statistics.median(cb_time[name])
        result["modes"][name] = {
            "ms_per_step": 1e3 * best,
            "ratio": best / base,
            "rows": rows[name],
            "callback_ms_per_step": 1e3 * cb,
            "callback_ratio": (base + cb) / base,
            "all_ms": [1e3 * t for t in per_mode[name]],
        }
        print(
            f"| {name} | {rows[name]:.2f} | {1e3 * best:.2f} | {best / base:.3f}x | {1e3 * cb:.3f} "
            f"| {(base + cb) / base:.3f}x |"
        )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
