"""``python -m negguide.generate``: negguide's modes from the command line, PNGs with their settings.

    python -m negguide.generate --model stabilityai/stable-diffusion-xl-base-1.0 --prompt "a park" \\
        --negative "people" --mode dng --steps 30 --seed 1 --num-images 4 --out out/ --plot

Every setting is checked before the model is loaded; a problem is one line on stderr and exit status 2.
PNG metadata: ``parameters`` (A1111's text, with the negguide settings) and ``negguide`` (JSON: every
setting, the seed, and for DNG this image's p(t) and lambda(t)).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from .. import PROBE_DIRECTIONS, TRACKERS, UNITS, AdaptiveStart, GuidanceSpec, SettingsError, StepWindow
from ..configs import ADAPTIVE_SIGNALS
from .scheduler_names import KINDS, SCHEDULERS, UnsupportedScheduler

CLI_MODES = ("off", "windowed", "np3", "dns", "dng", "sld", "perp_neg", "np_lambda", "adaptive", "dnp")
WINDOWED_MODES = ("windowed", "np3", "adaptive", "dnp")
_ADAPTIVE, _SPEC = AdaptiveStart(), GuidanceSpec()  # the core's defaults, shown in --help
DTYPES = ("float32", "float16", "bfloat16")

# option dest -> (modes it applies to, field name in its config)
MODE_OPTIONS = {
    "window_start": (WINDOWED_MODES, None), "window_end": (WINDOWED_MODES, None),
    "window_unit": (WINDOWED_MODES, None), "dns_scale": (("dns", "dnp"), None),
    "lambda0": (("dng",), "lambda0"), "prior": (("dng",), "prior"), "temperature": (("dng",), "temperature"),
    "offset": (("dng",), "offset"), "p_max": (("dng",), "p_max"), "tracker": (("dng",), "tracker"),
    "probe_pairs": (("dng",), "probe_pairs"), "probe_directions": (("dng",), "probe_directions"),
    "sld_threshold": (("sld",), "threshold"), "sld_s_s": (("sld",), "s_s"), "sld_beta_m": (("sld",), "beta_m"),
    "sld_s_m": (("sld",), "s_m"), "sld_warmup": (("sld",), "warmup_steps"),
    "perp_neg_scale": (("perp_neg",), None), "captioner": (("dnp",), None), "caption_prompt": (("dnp",), None),
    "negative_scale": (("np_lambda",), None),
    "adaptive_signal": (("adaptive",), "signal"), "adaptive_threshold": (("adaptive",), "threshold"),
}


class UsageError(Exception):
    """A problem with the command line: printed as one line per problem, exit status 2."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m negguide.generate",
                                 description="Generate images with negguide's negative-guidance modes on a diffusers "
                                             "SD1/SD2, SDXL or SD3 pipeline.")
    m = ap.add_argument_group("model")
    m.add_argument("--model", required=True, help="hub id or local diffusers folder (with model_index.json)")
    m.add_argument("--scheduler", choices=list(SCHEDULERS), help="default: the model's own scheduler")
    m.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    m.add_argument("--dtype", choices=DTYPES, help="default: float16 on cuda, float32 elsewhere")
    m.add_argument("--variant", help="weights variant to load, e.g. fp16")
    p = ap.add_argument_group("prompt and sampling")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default=None, help="negative prompt (default: none, the pipeline's empty one)")
    p.add_argument("--steps", type=int, help="default: the model folder's negguide.json, else 50 (SD1/SDXL), 28 (SD3)")
    p.add_argument("--cfg", type=float, help="CFG scale (default: the model folder's negguide.json, else 7.5 SD1, "
                                             "5 SDXL, 7 SD3)")
    p.add_argument("--seed", type=int, help="seed of the first image; image i uses seed + i (default: random)")
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--batch-size", type=int, help="images per pipeline call (default: all)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM's noise multiplier")
    g = ap.add_argument_group("guidance mode")
    g.add_argument("--mode", choices=CLI_MODES, default="off",
                   help="off: plain negative prompt; windowed: negative prompt in a step window (Ban et al.); np3: "
                        "3-term; dns: diffusion-negative sampling; dng: dynamic negative guidance; sld; perp_neg; "
                        "np_lambda: constant negative guidance E + w (P - E) - lambda (N - P); adaptive: the "
                        "negative starts per image when a signal fires, inside a window; "
                        "dnp: DNS image -> caption -> final image with the caption as negative prompt")
    g.add_argument("--window-start", type=float,
                   help=f"windowed/np3: first step of the window (default {StepWindow.paper_default().describe()}); "
                        f"adaptive: the earliest start (default {StepWindow.adaptive_default().describe()})")
    g.add_argument("--window-end", type=float, help="windowed/np3: last step; adaptive: where the negative stops")
    g.add_argument("--window-unit", choices=UNITS, help="step (1-based, inclusive), fraction, sigma (default step)")
    g.add_argument("--dns-scale", type=float, help="dns/dnp: s (default cfg - 1)")
    g.add_argument("--lambda0", type=float, help="dng: lambda0 (default 5)")
    g.add_argument("--prior", type=float, help="dng: prior p0 (default 0.01)")
    g.add_argument("--temperature", type=float, help="dng: temperature (default 0.2)")
    g.add_argument("--offset", type=float, help="dng: offset (default 0.003)")
    g.add_argument("--p-max", type=float, help="dng: posterior clamp (default 0.8)")
    g.add_argument("--tracker", choices=TRACKERS, help="dng: posterior tracker (default auto: transition for "
                                                       "stochastic schedulers, flow-gated otherwise)")
    g.add_argument("--probe-pairs", type=int, help="dng flow-hutchinson / flow-gated: probe pairs (default 1)")
    g.add_argument("--probe-directions", choices=PROBE_DIRECTIONS,
                   help="dng flow-hutchinson / flow-gated: deflated (default: each image's dominant directions "
                        "exact, lower spread at the same cost) or rademacher")
    g.add_argument("--sld-threshold", type=float)
    g.add_argument("--sld-s-s", type=float)
    g.add_argument("--sld-beta-m", type=float)
    g.add_argument("--sld-s-m", type=float)
    g.add_argument("--sld-warmup", type=int)
    g.add_argument("--perp-neg-scale", type=float, help="perp_neg: w_n (default 1)")
    g.add_argument("--negative-scale", type=float,
                   help=f"np_lambda: the constant lambda (default {_SPEC.negative_scale:g})")
    g.add_argument("--adaptive-signal", choices=ADAPTIVE_SIGNALS,
                   help=f"adaptive: what starts an image's negative (default {_ADAPTIVE.signal}): alignment "
                        "cos(N - E, P - E) >= threshold, gap |N - P| <= threshold x its running peak, none: the "
                        "window's start (the windowed mode, bit for bit)")
    g.add_argument("--adaptive-threshold", type=float,
                   help=f"adaptive: the signal's level (default {_ADAPTIVE.threshold:g}; alignment: a cosine in "
                        "[-1, 1], gap: a fraction in (0, 1])")
    g.add_argument("--captioner", help="dnp: transformers captioning model or the testbed's detector folder "
                                       "(default: the model folder's negguide.json, else "
                                       "Salesforce/blip-image-captioning-base)")
    g.add_argument("--caption-prompt", help="dnp: text prompt for the captioner (default empty)")
    o = ap.add_argument_group("output")
    o.add_argument("--out", default="outputs/negguide", help="output folder (created)")
    o.add_argument("--plot", action="store_true", help="dng: also save the p(t)/lambda(t) plot per batch")
    o.add_argument("--attention", metavar="NEG_WORD[:POS_WORD]",
                   help="capture cross-attention and save Ban et al.'s negative-prompt strength r_t per step "
                        "(attention-*.png, and r_t in each PNG's metadata): the negative prompt's word NEG_WORD "
                        "against the prompt's POS_WORD (default: the same word); SD 1.x/2.x and SDXL")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


# --- checks before any work ---------------------------------------------------------------------------------
def build_mode(args, default_cfg: float) -> tuple[object, dict]:
    """The :class:`GuidanceSpec` of the run (DNS pass for dnp) and the dnp options; raises UsageError."""
    from .settings import build_spec

    problems = [f"--{dest.replace('_', '-')} applies to --mode {'/'.join(modes)}, not {args.mode}"
                for dest, (modes, _) in MODE_OPTIONS.items()
                if getattr(args, dest) is not None and args.mode not in modes]
    if problems:
        raise UsageError(problems)
    window = None
    if args.window_start is not None or args.window_end is not None:
        if args.window_start is None or args.window_end is None:
            raise UsageError("a window needs both --window-start and --window-end")
        try:
            window = StepWindow(args.window_start, args.window_end, args.window_unit or "step")
        except SettingsError as err:
            raise UsageError(err.problems) from None
    elif args.window_unit is not None:
        raise UsageError("--window-unit needs --window-start and --window-end")
    dng = {f: getattr(args, d) for d, (modes, f) in MODE_OPTIONS.items() if modes == ("dng",)
           and getattr(args, d) is not None}
    sld = {f: getattr(args, d) for d, (modes, f) in MODE_OPTIONS.items() if modes == ("sld",)
           and getattr(args, d) is not None}
    adaptive = {f: getattr(args, d) for d, (modes, f) in MODE_OPTIONS.items() if modes == ("adaptive",)
                and getattr(args, d) is not None}
    mode = "dns" if args.mode == "dnp" else args.mode
    try:
        spec = build_spec(mode, args.cfg if args.cfg is not None else default_cfg, None if mode == "dns" else window,
                          args.dns_scale, dng or None, sld or None,
                          1.0 if args.perp_neg_scale is None else args.perp_neg_scale,
                          _SPEC.negative_scale if args.negative_scale is None else args.negative_scale,
                          adaptive or None)
    except SettingsError as err:
        raise UsageError(err.problems) from None
    dnp = {"window": window, "captioner": args.captioner, "caption_prompt": args.caption_prompt or ""}
    return spec, dnp


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or \
        model.endswith((".safetensors", ".ckpt", ".bin"))


def read_model_index(model: str) -> dict:
    """The model's ``model_index.json`` (local folder or hub) before loading: pipeline and scheduler classes."""
    path = Path(model).expanduser()
    if path.exists() or _looks_like_path(model):
        if path.is_file():
            raise UsageError(f"{model} is a single file: load it in Python with the pipeline's from_single_file and "
                             "wrap it with NegGuidePipeline.from_pipe (the CLI takes diffusers folders and hub ids)")
        if not path.is_dir():
            raise UsageError(f"model folder {model} does not exist")
        index = path / "model_index.json"
        if not index.is_file():
            raise UsageError(f"{model} has no model_index.json: it is not a diffusers pipeline folder")
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{index} is not valid JSON ({err}): repair it or save the pipeline again with "
                             "save_pretrained") from None
        if not isinstance(data, dict):
            raise UsageError(f"{index} must hold a JSON object (a diffusers pipeline's model_index.json)")
        return data
    from .hub import hub_offline, is_cached

    if hub_offline() and not is_cached(model, "model_index.json"):  # nothing to try: say so at once
        raise UsageError(f"could not read {model}'s model_index.json: HF_HUB_OFFLINE is set and it is not in the "
                         "local Hugging Face cache; give --model a local diffusers folder, or run where the hub can "
                         "be reached")
    try:
        from diffusers import DiffusionPipeline

        return dict(DiffusionPipeline.load_config(model))
    except Exception as err:  # hub errors come in many classes; the user needs the cause
        from .hub import unreachable_reason

        reason = unreachable_reason(model)
        if reason is not None:
            raise UsageError(f"could not read {model}'s model_index.json: {reason}; give --model a local diffusers "
                             "folder, or run where the hub can be reached") from None
        raise UsageError(f"could not read {model}'s model_index.json: {str(err).splitlines()[0]}") from None


def out_problem(out: str) -> str | None:
    """What keeps the output folder from being created and written, known before any model loads."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        return f"--out {out} is a file; give a folder (it is created if missing)"
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, so the folder cannot be created"
    import os

    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: {parent} is not writable"
    return None


def captioner_problem(captioner: str) -> str | None:
    """Why --mode dnp could not caption: its captioner is a hub id this machine neither has nor can download."""
    if Path(captioner).expanduser().is_dir():
        return None
    from .hub import is_cached, unreachable_reason

    if is_cached(captioner, "config.json"):
        return None
    reason = unreachable_reason(captioner)
    if reason is None:
        return None
    return (f"--mode dnp captions the DNS image with {captioner}, which is not on this machine: {reason}. Give a "
            "local captioner folder with --captioner PATH (a transformers captioning model saved with "
            "save_pretrained), or run --mode dns, look at the images and write the negative yourself (--negative)")


def check_run(args, spec, family: str, index: dict) -> None:
    """Everything that can be known about the model before loading it."""
    import torch

    from .. import Frame, SettingsError, check_compatible

    flow = family == "sd3"
    problems = []
    if args.scheduler and (KINDS[SCHEDULERS[args.scheduler][0]] == "flow") != flow:
        fits = [n for n, (c, _, _) in SCHEDULERS.items() if (KINDS[c] == "flow") == flow]
        problems.append(f"scheduler {args.scheduler} does not fit a {family.upper()} model; use one of: "
                        f"{', '.join(fits)}")
    own = (index.get("scheduler") or [None, None])[-1]
    if not args.scheduler and own not in KINDS:
        problems.append(f"the model's scheduler {own} is not supported; pass --scheduler, one of: "
                        f"{', '.join(n for n, (c, _, _) in SCHEDULERS.items() if (KINDS[c] == 'flow') == flow)}")
    from .settings import uses_negative

    if args.negative is None and uses_negative(spec):
        problems.append(f"--mode {args.mode} guides away from a negative prompt: pass --negative")
    try:  # the core's own refusal of a mode/model pair (SLD on a flow model)
        check_compatible(spec, Frame.rectified_flow() if flow else Frame.vp_at_sigma())
    except SettingsError as err:
        problems += err.problems
    for name, value, low in (("--steps", args.steps, 1), ("--num-images", args.num_images, 1),
                             ("--batch-size", args.batch_size, 1)):
        if value is not None and value < low:
            problems.append(f"{name} must be >= {low}, got {value}")
    for name, value in (("--width", args.width), ("--height", args.height)):
        if value is not None and (value < 8 or value % 8):
            problems.append(f"{name} must be a positive multiple of 8, got {value}")
    if args.attention:
        problems += attention_problems(args, family)
    if args.plot:
        from .plot import matplotlib_available

        if args.mode != "dng":
            problems.append("--plot draws DNG's p(t) and lambda(t): it needs --mode dng")
        elif not spec.dng.active:
            problems.append("--plot needs lambda0 > 0 (at lambda0 = 0 DNG tracks nothing)")
        elif not matplotlib_available():
            problems.append("--plot needs matplotlib: pip install 'negguide[toy]'")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(f"--device {device}: no CUDA device is available")
    if device == "mps" and not torch.backends.mps.is_available():
        problems.append("--device mps: MPS is not available")
    problem = out_problem(args.out)
    if problem:
        problems.append(problem)
    if args.mode == "dnp" and not problems:  # asks the hub at most once, and only when all else is right
        problem = captioner_problem(dnp_captioner(args))
        if problem:
            problems.append(problem)
    if problems:
        raise UsageError(problems)


def dnp_captioner(args) -> str:
    """The captioner --mode dnp uses: --captioner, else the model folder's negguide.json, else the default."""
    from .captioner import DEFAULT_CAPTIONER
    from .model_defaults import read_model_defaults

    return args.captioner or read_model_defaults(args.model).get("captioner") or DEFAULT_CAPTIONER


# --- output ---------------------------------------------------------------------------------------------------
PER_IMAGE_RECORDS = ("p", "lambda", "negative_acting", "signal")  # record keys that hold one value per image


def image_metadata(settings: dict, records: list[dict], model: str, index: int, batch_index: int, seed: int,
                   negative: str | None) -> tuple[str, str]:
    """(A1111 ``parameters`` text, ``negguide`` JSON) of image ``batch_index`` of a batch."""
    from .settings import a1111_parameters, negguide_fields

    prompt = settings["prompt"][batch_index // settings["num_images_per_prompt"]]
    cfg = settings["guidance"]["cfg_scale"]
    fields = {"Steps": settings["steps"], "Sampler": settings["sampler"], "CFG scale": f"{cfg:g}", "Seed": seed,
              "Size": f"{settings['width']}x{settings['height']}", "Model": Path(model).name or model,
              **negguide_fields(settings)}
    own = [{k: (v[batch_index] if k in PER_IMAGE_RECORDS else v) for k, v in r.items()} for r in records]
    if settings["guidance"]["mode"] == "adaptive":  # where this image's negative started (1-based step)
        from .. import negative_starts

        batch = len(settings["prompt"]) * settings["num_images_per_prompt"]
        start = negative_starts(records, batch)[batch_index] if records else None
        fields["NegGuide adaptive start"] = "never" if start is None else f"step {start + 1}"
    fields["Version"] = f"negguide {settings['negguide']}"
    data = {**settings, "model": model, "index": index, "seed": seed, "prompt": prompt, "negative_prompt": negative,
            "records": own}
    data.pop("seeds", None)
    return a1111_parameters(prompt, negative, fields), json.dumps(data)


def save_png(image, path: Path, parameters: str, data: str) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("negguide", data)
    image.save(path, pnginfo=info)


def generate(args, spec, dnp: dict) -> list[Path]:
    import torch

    from .pipeline import NegGuidePipeline, dtype_kwarg

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype or ("float16" if device.startswith("cuda") else "float32"))
    kwargs = dtype_kwarg(dtype)
    if args.variant:
        kwargs["variant"] = args.variant
    pipe = NegGuidePipeline.from_pretrained(args.model, **kwargs).to(device)
    if args.scheduler:
        pipe.set_scheduler(args.scheduler)
    pipe.set_progress_bar_config(disable=args.quiet)
    pipe.scheduler_adapter(spec, args.eta)  # the model's own scheduler may not fit negguide: say so before sampling
    out_dir = Path(args.out).expanduser()  # created with the first image: a failed run leaves no empty folder
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    total, per_call = args.num_images, args.batch_size or args.num_images
    common = dict(num_inference_steps=args.steps, height=args.height, width=args.width, eta=args.eta)
    saved = []
    for start in range(0, total, per_call):
        seeds = [seed + i for i in range(start, min(total, start + per_call))]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        prompts = [args.prompt] * len(seeds)
        if args.mode == "dnp":
            out = pipe.dnp(prompts, captioner=dnp["captioner"], window=dnp["window"],
                           caption_prompt=dnp["caption_prompt"], dns_scale=spec.dns_scale,
                           guidance_scale=spec.cfg_scale, generator=generators, **common)
            negatives = out.dnp_prompts
        else:
            out = pipe(prompts, None if args.negative is None else [args.negative] * len(seeds), guidance=spec,
                       generator=generators, capture_attention=bool(args.attention), **common)
            negatives = [args.negative] * len(seeds)
        for b, s in enumerate(seeds):
            parameters, data = image_metadata(out.settings, out.records, args.model, start + b, b, s, negatives[b])
            if args.attention:
                words = attention_words(args.attention)
                strength = [None if v != v else round(float(v), 6) for v in out.attention.strength(*words, image=b)]
                data = json.dumps({**json.loads(data), "attention": {"words": words, "steps": out.attention.steps,
                                                                     "strength": strength}})
            path = out_dir / f"{start + b:05d}-{s}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            save_png(out.images[b], path, parameters, data)
            saved.append(path)
            if args.mode == "dnp":
                dns_path = out_dir / f"{start + b:05d}-{s}-dns.png"
                save_png(out.dns_images[b], dns_path, *image_metadata(
                    {**out.settings, "guidance": out.settings["dnp"]["dns_guidance"], "mode_label": "DNS"},
                    [], args.model, start + b, b, s, None))
                saved.append(dns_path)
        if args.attention:
            from .plot import figure_to_image

            fig = out.plot_attention(*attention_words(args.attention), title=f"{args.prompt!r}, negative "
                                     f"{args.negative!r}: r_t (Ban et al. 2024, Eq. 6)")
            attention_path = out_dir / f"attention-{start:05d}.png"
            figure_to_image(fig).save(attention_path)
            saved.append(attention_path)
        if args.plot:
            from .plot import figure_to_image

            fig = out.plot(title=f"{args.prompt!r} without {args.negative!r}", labels=[f"seed {s}" for s in seeds])
            plot_path = out_dir / f"guidance-{start:05d}.png"
            figure_to_image(fig).save(plot_path)
            saved.append(plot_path)
    return saved


def attention_problems(args, family: str) -> list[str]:
    """What keeps --attention from measuring anything, known before the model loads."""
    from .plot import matplotlib_available

    neg, pos = attention_words(args.attention)
    problems = []
    if family not in ("sd", "sdxl"):
        problems.append(f"--attention reads a UNet's cross-attention layers; a {family.upper()} model has none")
    if args.mode in ("dns", "dnp") or args.negative is None:
        problems.append("--attention measures the negative prompt's attention: pass --negative with a mode that "
                        "evaluates it (off, windowed, np3, dng, sld, perp_neg)")
    else:
        for word, text, where in ((neg, args.negative, "--negative"), (pos, args.prompt, "--prompt")):
            if not word or word.lower() not in text.lower():
                problems.append(f"--attention: {word!r} does not occur in {where} {text!r}")
    if not matplotlib_available():
        problems.append("--attention draws r_t: pip install 'negguide[toy]' (matplotlib)")
    return problems


def attention_words(text: str) -> tuple[str, str]:
    """``NEG_WORD[:POS_WORD]`` -> (negative word, positive word)."""
    neg, _, pos = text.partition(":")
    return neg.strip(), (pos or neg).strip()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .families import FAMILIES_BY_CLASS
    from .model_defaults import read_model_defaults

    try:
        index = read_model_index(args.model)
        cls = index.get("_class_name", "?")
        if cls not in FAMILIES_BY_CLASS:
            raise UsageError(f"{args.model} is a {cls}; negguide drives {', '.join(FAMILIES_BY_CLASS)}")
        family = FAMILIES_BY_CLASS[cls]
        try:
            defaults = read_model_defaults(args.model)
        except ValueError as err:
            raise UsageError(str(err)) from None
        spec, dnp = build_mode(args, defaults.get("guidance_scale", family.default_guidance_scale))
        check_run(args, spec, family.name, index)
    except UsageError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    from .families import UnsupportedPipeline

    try:
        saved = generate(args, spec, dnp)
    except (SettingsError, UnsupportedScheduler, UnsupportedPipeline) as err:
        for problem in getattr(err, "problems", [str(err)]):
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as err:  # loading: missing files, no network with HF_HUB_OFFLINE, disk full
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 1
    for path in saved:
        print(path)
    return 0
