"""`python -m train t2i-eval`: the testbed's quality bar, measured with its detector.

1. The instrument first (it must pass before any number below is trusted): the detector's exact reading of
   fresh renders and of their VAE reconstructions (what a perfect generator would hand it), the adherence of
   renders to their own captions (the ceiling) and to another scene's caption (the floor).
2. The model: held-out captions (every object named; half of them hold an object pair never shown together in
   training), `seeds` images each, DDIM at the model's CFG scale; object adherence, exact match, size, texture,
   count and background accuracy with prompt-clustered bootstrap 95% intervals, overall and split by held-out
   vs seen pairs; a detector-feature FID to renders of the same captions, beside the real-vs-real floor at the
   same sample count.
Writes quality.json, quality.md and samples.png into --out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from train.errors import UsageError
from train.t2i.adherence import FAILURES, RATES, failure, score
from train.t2i.captions import EVALUATION, CaptionSpec, captions_for, parse
from train.t2i.scenes import Scenes, held_out_pairs, render, sample_scenes, scenes_like, to_unit

EVAL_SEED = 20_261_206  # the evaluation's scenes and captions; training draws from per-step generators
TUNING_SEED = EVAL_SEED + 100  # captions for choosing settings (t2i-eval --tuning), never the reported ones
IMAGE_SEED = 7_000_000  # image j of prompt i starts from seed IMAGE_SEED + i * 1000 + j


def evaluation_prompts(n: int, held_out_fraction: float = 0.1, seed: int = EVAL_SEED) -> tuple[list[str], list[bool]]:
    """n held-out captions (every object named, background said) and whether each holds a held-out pair: the
    first half do, the second half do not (two- and three-object scenes in both halves)."""
    held = held_out_pairs(held_out_fraction)
    g = torch.Generator().manual_seed(seed)
    want_held, want_seen = (n + 1) // 2, n // 2
    picked_held: list[Scenes] = []
    picked_seen: list[Scenes] = []
    while sum(map(len, picked_held)) < want_held or sum(map(len, picked_seen)) < want_seen:
        scenes = sample_scenes(g, 512)
        holds = torch.tensor([_holds(scenes, i, held) for i in range(len(scenes))])
        multi = scenes.count >= 2
        picked_held.append(scenes[holds.nonzero().flatten()])
        picked_seen.append(scenes[(~holds & multi).nonzero().flatten()])
    scenes = Scenes.cat([Scenes.cat(picked_held)[:want_held], Scenes.cat(picked_seen)[:want_seen]])
    return captions_for(scenes, seed, EVALUATION), [True] * want_held + [False] * want_seen


def _holds(scenes: Scenes, i: int, pairs) -> bool:
    ids = sorted(int(o) for o in scenes.obj[i] if o >= 0)
    return any((a, b) in pairs for k, a in enumerate(ids) for b in ids[k + 1:])


def spec_scenes(spec: CaptionSpec, n: int, g: torch.Generator) -> Scenes:
    """n scenes drawn from a caption's own distribution (what it leaves open, drawn at random)."""
    objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "texture": o.texture} for o in spec.objects]
    bg = spec.background
    return scenes_like(objects, bg.kind if bg else None, bg.tone if bg else None, n, g)


def _uint8(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: list[int], steps: int, cfg: float, batch_size: int,
             negative: list[str] | None = None, guidance: dict | None = None, progress=None) -> torch.Tensor:
    """uint8 images, one per (prompt, seed) pair, through negguide's diffusers front-end (mode off: plain CFG
    with the empty or given negative prompt, unless `guidance` holds NegGuidePipeline mode arguments)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        gens = [torch.Generator().manual_seed(s) for s in seeds[chunk]]
        kwargs = guidance or {"mode": "off"}
        result = pipe(prompts[chunk], negative[chunk] if negative else None, guidance_scale=cfg,
                      num_inference_steps=steps, generator=gens, output_type="pt", **kwargs)
        out.append(_uint8(result.images.cpu()))
        if progress is not None:
            progress(len(out[-1]))
    return torch.cat(out)


def rates(records, clusters) -> dict:
    from train.t2i.stats import cluster_bootstrap

    result = {}
    for name, get in RATES.items():
        pairs = [get(a) for a in records]
        result[name] = cluster_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], clusters).as_dict()
    return result


@torch.no_grad()
def instrument_checks(detector, vae, n: int = 1000, seed: int = EVAL_SEED + 1) -> dict:
    """The detector on renders, on their VAE reconstructions, and adherence ceiling / floor."""
    from train.t2i.detector import scene_detection

    g = torch.Generator().manual_seed(seed)
    scenes = sample_scenes(g, n)
    images = render(scenes)
    truth = [scene_detection(scenes, i) for i in range(n)]
    exact = [f == t for f, t in zip(detector.detect(to_unit(images)), truth, strict=True)]
    out = {"samples": n, "render_exact": sum(exact) / n}
    if vae is not None:
        x = to_unit(images).to(vae.device, vae.dtype)
        recon = torch.cat([vae.decode(vae.encode(x[i:i + 250]).latent_dist.mean).sample for i in range(0, n, 250)])
        found = detector.detect(recon.float().cpu().clamp(-1, 1))
        out["vae_reconstruction_exact"] = sum(f == t for f, t in zip(found, truth, strict=True)) / n
    specs = [parse(c) for c in captions_for(scenes, seed, EVALUATION)]
    found = detector.detect(to_unit(images))
    out["ceiling_exact_match"] = sum(score(s, f).exact for s, f in zip(specs, found, strict=True)) / n
    out["floor_exact_match"] = sum(score(s, f).exact for s, f in zip(specs, found[1:] + found[:1], strict=True)) / n
    return out


def detector_fid(detector, generated: torch.Tensor, specs: list[CaptionSpec], seeds_per_prompt: int,
                 seed: int = EVAL_SEED + 2) -> dict:
    """FID in the detector's feature space between the generated images and renders of the same captions, and
    the floor: two independent render sets of the same captions, at the same sample count."""
    from train.removal.fid import FeatureStats, frechet_distance

    g = torch.Generator().manual_seed(seed)
    refs = [Scenes.cat([spec_scenes(s, seeds_per_prompt, g) for s in specs]) for _ in range(2)]
    feats = [detector.features(to_unit(x)) for x in (generated, render(refs[0]), render(refs[1]))]
    stats = [FeatureStats.from_features(f) for f in feats]
    return {"fid": frechet_distance(stats[0], stats[1]), "floor_real_vs_real": frechet_distance(stats[1], stats[2]),
            "samples": len(generated), "features": int(feats[0].shape[1])}


def evaluate_cli(args) -> int:
    from negguide.generate import NegGuidePipeline
    from train.sampling import save_grid
    from train.t2i.detector import load_detector

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = Path(args.model)
    if not (model / "model_index.json").is_file():
        raise UsageError(f"{model} is not a testbed model folder (no model_index.json); train one with "
                         "`python -m train t2i` or use the shipped models/shapes-t2i")
    for name, value in (("--prompts", args.prompts), ("--seeds", args.seeds), ("--steps", args.steps),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be >= 1, got {value}")
    defaults = json.loads((model / "negguide.json").read_text()) if (model / "negguide.json").is_file() else {}
    cfg = args.cfg if args.cfg is not None else defaults.get("guidance_scale", 4.0)
    testbed = defaults.get("testbed", {})
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    detector = load_detector(Path(args.detector) if args.detector else model / "detector", device)
    pipe = NegGuidePipeline.from_pretrained(model, scheduler="ddim").to(device)
    pipe.set_progress_bar_config(disable=True)
    out = Path(args.out or ("runs/t2i-tuning" if args.tuning else "docs/t2i/testbed"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    checks = None
    if not args.tuning:
        print("instrument checks ...", file=sys.stderr)
        checks = instrument_checks(detector, pipe.pipe.vae)
        print(json.dumps(checks), file=sys.stderr)

    prompts, held = evaluation_prompts(args.prompts, testbed.get("held_out_fraction", 0.1),
                                       TUNING_SEED if args.tuning else EVAL_SEED)
    flat_prompts = [p for p in prompts for _ in range(args.seeds)]
    seeds = [IMAGE_SEED + i * 1000 + j for i in range(len(prompts)) for j in range(args.seeds)]
    done = [0]

    def progress(k):
        done[0] += k
        rate = done[0] / (time.perf_counter() - started)
        print(f"generated {done[0]}/{len(seeds)} ({rate:.2f} img/s, about {(len(seeds) - done[0]) / rate / 60:.0f} min "
              "left)", file=sys.stderr, flush=True)

    images = generate(pipe, flat_prompts, seeds, args.steps, cfg, args.batch_size, progress=progress)
    specs = [parse(p) for p in prompts]
    found = detector.detect(to_unit(images))
    records = [score(specs[k // args.seeds], f) for k, f in enumerate(found)]
    failures = [failure(specs[k // args.seeds], f, r) for k, (f, r) in enumerate(zip(found, records, strict=True))]
    clusters = [k // args.seeds for k in range(len(records))]
    held_flags = [held[k // args.seeds] for k in range(len(records))]
    report = {
        "model": str(model), "model_sha256": _fingerprint(model), "device": device,
        "caption_set": "tuning" if args.tuning else "report", "cfg": cfg,
        "steps": args.steps, "scheduler": "ddim", "prompts": len(prompts),
        "seeds_per_prompt": args.seeds, "images": len(images), "instrument": checks,
        "all": rates(records, clusters),
        "held_out_pairs": rates([r for r, h in zip(records, held_flags, strict=True) if h],
                                [c for c, h in zip(clusters, held_flags, strict=True) if h]),
        "seen_pairs": rates([r for r, h in zip(records, held_flags, strict=True) if not h],
                            [c for c, h in zip(clusters, held_flags, strict=True) if not h]),
        "failures": {kind: failures.count(kind) for kind in FAILURES},
        "detector_fid": None if args.tuning else detector_fid(detector, images, specs, args.seeds),
        "seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads(),
    }
    (out / "quality.json").write_text(json.dumps(report, indent=1))
    with open(out / "per_image.jsonl", "w") as per_image:  # what each image showed: the failures to look at
        for k, (f, why) in enumerate(zip(found, failures, strict=True)):
            per_image.write(json.dumps({"prompt": flat_prompts[k], "seed": seeds[k], "failure": why, **f}) + "\n")
    (out / "quality.md").write_text(quality_markdown(report))
    write_failures(out, images, flat_prompts, found, failures)
    if args.tuning:
        print(quality_markdown(report), file=sys.stderr)
        return 0
    show = min(len(prompts), 16)
    save_grid(to_unit(images[: show * args.seeds]), out / "samples.png", columns=args.seeds * 4)
    (out / "samples.txt").write_text("\n".join(prompts[:show]) + "\n")
    write_golden(pipe, detector, out, args.steps, cfg)
    write_figures(pipe, out, args.steps, cfg)
    print(quality_markdown(report), file=sys.stderr)
    return 0


def write_failures(out: Path, images: torch.Tensor, prompts: list[str], found: list[dict], failures: list,
                   show: int = 12) -> None:
    """failures.png: the first `show` images that are not an exact match, 4x enlarged, 6 per row;
    failures.txt: each one's caption, the reason and what the detector read."""
    from train.sampling import save_grid

    picked = [k for k, why in enumerate(failures) if why is not None][:show]
    if not picked:
        return
    big = torch.nn.functional.interpolate(to_unit(images[picked]), scale_factor=4, mode="nearest")
    save_grid(big, out / "failures.png", columns=6)
    lines = [f"{n + 1}. {prompts[k]} -> {failures[k]}: read "
             + ", ".join(f"{o['size']} {o['texture']} {o['colour']} {o['shape']}" for o in found[k]["objects"])
             + f" on {found[k]['tone']} {found[k]['background']}" for n, k in enumerate(picked)]
    (out / "failures.txt").write_text("\n".join(lines) + "\n")


def write_golden(pipe, detector, out: Path, steps: int, cfg: float, prompts: int = 8, seeds: int = 2) -> dict:
    """The small fixed run tests/train/test_t2i_shipped.py repeats (one batch, as the test runs it)."""
    texts, _ = evaluation_prompts(prompts, seed=EVAL_SEED + 5)
    flat = [p for p in texts for _ in range(seeds)]
    image_seeds = [IMAGE_SEED + k for k in range(len(flat))]
    images = generate(pipe, flat, image_seeds, steps, cfg, len(flat))
    records = [score(parse(p), f) for p, f in zip(flat, detector.detect(to_unit(images)), strict=True)]
    golden = {"prompts": flat, "seeds": image_seeds, "steps": steps, "cfg": cfg,
              "exact": sum(r.exact for r in records), "objects_found": sum(r.named_found for r in records),
              "objects_named": sum(r.named for r in records)}
    (out / "golden.json").write_text(json.dumps(golden, indent=1))
    return golden


# The README's figure: one prompt, one negative, every mode on the same seeds.
FIGURE_PROMPTS = (("a red circle and a blue square on horizontal stripes", "blue square"),
                  ("a striped yellow triangle and a green cross on a grey background", "striped"))
FIGURE_SEEDS = tuple(range(8))


def mode_rows(pipe, prompt: str, negative: str, steps: int, cfg: float, seeds=FIGURE_SEEDS) -> list:
    """(label, uint8 images) per mode for one prompt/negative pair, the same seeds in every row."""
    modes = [("no negative prompt", None, {"mode": "off"}),
             (f"negative prompt '{negative}', every step", negative, {"mode": "off"}),
             ("windowed negative (default window)", negative, {"mode": "windowed"}),
             ("DNG", negative, {"mode": "dng"}),
             ("DNS (diffusion-negative sample of the prompt)", None, {"mode": "dns"})]
    rows = []
    for label, neg, guidance in modes:
        images = generate(pipe, [prompt] * len(seeds), [IMAGE_SEED + s for s in seeds], steps, cfg, len(seeds),
                          negative=None if neg is None else [neg] * len(seeds), guidance=guidance)
        rows.append((label, images))
    return rows


def write_figures(pipe, out: Path, steps: int, cfg: float) -> None:
    from train.t2i.figures import modes_figure, scenes_figure

    scenes_figure().save(out / "scenes.png")
    for k, (prompt, negative) in enumerate(FIGURE_PROMPTS):
        rows = mode_rows(pipe, prompt, negative, steps, cfg)
        title = f"'{prompt}', negative '{negative}' (DDIM {steps}, CFG {cfg:g}, seeds {IMAGE_SEED}+0..7)"
        modes_figure(rows, title).save(out / f"modes-{k + 1}.png")


def _fingerprint(model: Path) -> str | None:
    """SHA-256 of the model's sha256.json (which covers every file): which model a committed report measured."""
    from train.checkpoint import sha256_file

    index = model / "sha256.json"
    return sha256_file(index) if index.is_file() else None


def quality_markdown(report: dict) -> str:
    from train.t2i.stats import Rate

    def cell(d: dict) -> str:
        r = Rate(d["value"], *d["ci95"], d["numerator"], d["denominator"], d["clusters"])
        return r.text()

    tuning = report.get("caption_set") == "tuning"
    lines = [f"# Testbed quality bar{' (tuning captions)' if tuning else ''} ({report['images']} images: "
             f"{report['prompts']} held-out captions x {report['seeds_per_prompt']} seeds, DDIM {report['steps']} "
             f"steps, CFG {report['cfg']:g})", "",
             "| metric | all | captions with a held-out pair | seen pairs only |", "|---|---|---|---|"]
    for name in RATES:
        lines.append(f"| {name.replace('_', ' ')} | {cell(report['all'][name])} | "
                     f"{cell(report['held_out_pairs'][name])} | {cell(report['seen_pairs'][name])} |")
    failed = report.get("failures")
    if failed:
        lines += ["", f"Not an exact match, by the first reason that applies ({sum(failed.values())} of "
                      f"{report['images']} images; per image: per_image.jsonl): "
                  + ", ".join(f"{kind} {n}" for kind, n in failed.items()) + "."]
    fid, checks = report["detector_fid"], report["instrument"]
    if tuning:  # rates only: the FID and the instrument checks belong to the reported set
        return "\n".join(lines) + "\n"
    lines += ["", f"Detector-feature FID to renders of the same captions: {fid['fid']:.3f} (real-vs-real floor at "
                  f"{fid['samples']} images: {fid['floor_real_vs_real']:.3f}).", "",
              f"Instrument ({checks['samples']} fresh scenes): detector exact on renders "
              f"{100 * checks['render_exact']:.1f}%, "
              f"on VAE reconstructions {100 * checks.get('vae_reconstruction_exact', float('nan')):.1f}%; exact match "
              f"of renders to their own caption {100 * checks['ceiling_exact_match']:.1f}% (ceiling), to another "
              f"scene's caption {100 * checks['floor_exact_match']:.1f}% (floor).", "",
              "Intervals: 95% percentile bootstrap over captions (2,000 resamples); n = the rate's denominator."]
    return "\n".join(lines) + "\n"



