"""Per-step cost of every negguide mode in a real ComfyUI, as a ratio to ComfyUI's own CFG on the same graph.

    $PYTHON tests/comfyui/measure_cost.py COMFYUI_DIR CHECKPOINT [ROUNDS] [OUT.md]

Starts a ComfyUI server (``comfyui_server.Server``, ``COMFYUI_PYTHON``), then in interleaved rounds runs a KSampler
graph per mode and sampler family (an ancestral and a deterministic sampler) at 1 and 4 steps, 64x64, batch 1.
A round changes the seed, so ComfyUI samples again (every other node is answered from its cache). The prompt's
execution time is ComfyUI's own (``execution_start`` -> ``execution_success`` timestamps); the per-step cost is the
slope between the two step counts, which removes what a prompt costs besides its steps. Reports the median over
the rounds and the ratio to stock CFG as a markdown table.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from comfyui_server import Graph, Server, default_python

SAMPLERS = ("euler_ancestral", "dpmpp_2m")
STEPS = (1, 4)
DNG = {"lambda0": 5.0, "prior": 0.01, "temperature": 0.2, "offset": 0.003, "p_max": 0.8}
MODES = {  # name: (patch node, settings); None: stock CFG
    "stock CFG": None,
    "windowed (2-term), steps 2-3": ("Windowed", {"form": "2-term", "window_unit": "steps", "window_start": 2,
                                                  "window_end": 3}),
    "windowed (3-term), steps 2-3": ("Windowed", {"form": "3-term", "window_unit": "steps", "window_start": 2,
                                                  "window_end": 3}),
    "DNS": ("DNS", {}),
    "DNG, auto (transition / flow-gated)": ("DNG", {**DNG, "tracker": "auto"}),
    "DNG, flow-moment": ("DNG", {**DNG, "tracker": "flow-moment"}),
    "DNG, flow-hutchinson": ("DNG", {**DNG, "tracker": "flow-hutchinson"}),
    "Perp-Neg": ("PerpNeg", {"neg_scale": 1.0}),
    "SLD": ("SLD", {"threshold": 0.04, "scale": 100.0, "momentum_scale": 0.1, "momentum_beta": 0.2,
                    "warmup_steps": 0}),
}


def graph(server: Server, mode, sampler: str, steps: int, seed: int) -> Graph:
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=server.checkpoint)
    text = {t: [g.add("CLIPTextEncode", clip=[ckpt, 1], text=t), 0] for t in ("a red car", "rust", "")}
    model = [ckpt, 0]
    if mode is not None:
        node, settings = mode
        model = [g.add(f"NegGuide{node}Patch", model=model, empty_conditioning=text[""], **settings), 0]
    latent = [g.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0]
    out = g.add("KSampler", model=model, positive=text["a red car"], negative=text["rust"], latent_image=latent,
                seed=seed, steps=steps, cfg=6.0, sampler_name=sampler, scheduler="normal", denoise=1.0)
    g.add("SaveLatent", samples=[out, 0], filename_prefix="negguide_cost/x")
    return g


def execution_seconds(server: Server, g: Graph) -> float:
    result = server.run(g)
    result.assert_clean()
    stamps = {name: m["timestamp"] for name, m in result.messages.items() if "timestamp" in m}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def measure(server: Server, rounds: int) -> dict[tuple[str, str], list[float]]:
    per_step: dict[tuple[str, str], list[float]] = {}
    for mode in MODES.values():  # warm-up: model load, text encodes, first-call costs
        for sampler in SAMPLERS:
            execution_seconds(server, graph(server, mode, sampler, STEPS[0], 0))
    for r in range(rounds):
        for name, mode in MODES.items():
            for sampler in SAMPLERS:
                short, long = (execution_seconds(server, graph(server, mode, sampler, n, 1000 + r)) for n in STEPS)
                per_step.setdefault((name, sampler), []).append((long - short) / (STEPS[1] - STEPS[0]))
                print(f"round {r + 1}: {name} / {sampler}: {per_step[(name, sampler)][-1]:.3f} s/step", flush=True)
    return per_step


def table(per_step: dict[tuple[str, str], list[float]]) -> str:
    lines = ["| mode | " + " | ".join(f"{s}: s/step | vs stock" for s in SAMPLERS) + " |",
             "|---|" + "---|---|" * len(SAMPLERS)]
    for name in MODES:
        cells = []
        for sampler in SAMPLERS:
            median = statistics.median(per_step[(name, sampler)])
            stock = statistics.median(per_step[("stock CFG", sampler)])
            cells += [f"{median:.2f}", f"{median / stock:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    comfyui_dir, checkpoint = argv[1], Path(argv[2]).resolve()
    rounds = int(argv[3]) if len(argv) > 3 else 3
    with tempfile.TemporaryDirectory() as base:
        server = Server(comfyui_dir, Path(base), checkpoint, default_python()).start()
        try:
            result = table(measure(server, rounds))
        finally:
            server.stop()
    print(result)
    if len(argv) > 4:
        Path(argv[4]).write_text(result + "\n")


if __name__ == "__main__":
    main(sys.argv)
