"""Per-step cost of each negguide mode in a running WebUI (A1111, Forge, reForge, Forge Classic, Forge Neo),
as a ratio to the WebUI's own CFG on the same request, through its HTTP API.

    python bench/bench_webui_server.py http://127.0.0.1:7861 [--rounds 3] [--steps 2 10] [--out costs.json]

Start the WebUI with ``--api`` on 127.0.0.1 and negguide installed (``tests/webui/test_webui_integration.py``
shows the command line). Per mode: txt2img at 64x64, batch 1, the same seed, at two step counts; the per-step
cost is ``(t(long) - t(short)) / (long - short)``, which cancels what a request costs besides its steps (text
encoding, VAE, HTTP). Modes are interleaved within each round, so a slow phase of a shared machine hits every
mode alike; the median over the rounds is reported with its ratio to stock CFG of the same sampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

WINDOWED, DNS, DNG = "Windowed negative prompt", "Diffusion-negative sample (DNS)", "Dynamic negative guidance (DNG)"
DNG_ARGS = [DNG, "steps", 5, 15, "Same as first pass", 5, 15, 5.0, 0.01, 0.2, 0.003, 0.8]
MODES = {  # name: (sampler, the script's API args; None: the extension not asked)
    "stock CFG (Euler a)": ("Euler a", None),
    "off (Euler a)": ("Euler a", ["Off"]),
    "windowed, all steps (Euler a)": ("Euler a", [WINDOWED, "steps", 1, 1000]),
    "DNS (Euler a)": ("Euler a", [DNS]),
    "DNG transition (Euler a)": ("Euler a", DNG_ARGS + ["transition"]),
    "stock CFG (Euler)": ("Euler", None),
    "DNG flow-moment (Euler)": ("Euler", DNG_ARGS + ["flow-moment"]),
    "DNG flow-gated, auto (Euler)": ("Euler", DNG_ARGS + ["auto"]),
    "DNG flow-hutchinson (Euler)": ("Euler", DNG_ARGS + ["flow-hutchinson"]),
}


def txt2img(url: str, sampler: str, args: list | None, steps: int) -> float:
    payload = {"prompt": "a red car", "negative_prompt": "rust", "steps": steps, "width": 64, "height": 64,
               "seed": 1234, "sampler_name": sampler, "cfg_scale": 6.0, "batch_size": 1}
    if args is not None:
        payload["alwayson_scripts"] = {"negative guidance": {"args": args}}
    request = urllib.request.Request(f"{url}/sdapi/v1/txt2img", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    answer = json.loads(urllib.request.urlopen(request, timeout=3600).read())
    seconds = time.perf_counter() - start
    info = json.loads(answer.get("info") or "{}")
    if "NegGuide error" in info.get("extra_generation_params", {}):
        raise SystemExit(f"negguide refused {args}: {info['extra_generation_params']['NegGuide error']}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the WebUI's address, e.g. http://127.0.0.1:7861")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 10], metavar=("SHORT", "LONG"))
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()
    short, long = args.steps
    for sampler, mode_args in MODES.values():  # warm-up: model loads, first-call allocations
        txt2img(args.url, sampler, mode_args, short)
    per_step: dict[str, list[float]] = {name: [] for name in MODES}
    for r in range(args.rounds):
        for name, (sampler, mode_args) in MODES.items():
            seconds = [txt2img(args.url, sampler, mode_args, n) for n in (short, long)]
            per_step[name].append((seconds[1] - seconds[0]) / (long - short))
            print(f"round {r + 1}: {name}: {per_step[name][-1]:.3f} s/step", flush=True)
    stock = {sampler: statistics.median(per_step[f"stock CFG ({sampler})"]) for sampler in ("Euler a", "Euler")}
    rows = [{"mode": name, "seconds_per_step": statistics.median(per_step[name]),
             "vs_stock": statistics.median(per_step[name]) / stock[sampler], "rounds": per_step[name]}
            for name, (sampler, _) in MODES.items()]
    print("| mode | s/step | vs stock |\n|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['seconds_per_step']:.2f} | {row['vs_stock']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"url": args.url, "steps": [short, long], "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
