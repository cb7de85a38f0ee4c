"""`python -m train t2i`: train the text-to-image testbed (detector, VAE, the detector adapted to decoded images,
diffusion) and assemble its folder.

Each stage trains in its own folder under --output-dir and resumes exactly from its newest checkpoint when the
same command runs again (after Ctrl-C, a crash or a spent --time-budget); a finished stage is reused. When all
four are done, `<output-dir>/model/` holds the complete StableDiffusionPipeline folder with the adapted detector
in `detector/` and `sha256.json` over every file: what `models/shapes-t2i/` ships.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

EPILOG = """examples:
  python -m train t2i                                # the cpu preset: ~9 h of one busy CPU core, resumable
  python -m train t2i --time-budget 3600             # train for an hour; the same command continues later
  accelerate launch -m train t2i --preset gpu        # one or more GPUs (not timed yet)
  python -m train t2i-eval --model runs/t2i-cpu/model   # the quality bar of a trained (or the shipped) model
  python -m train t2i-export --out runs/t2i-cpu/at-newest  # the newest diffusion checkpoint as a model folder
See docs/t2i/testbed.md."""

STAGES = ("detector", "vae", "detector-decoded", "diffusion")


def add_t2i_commands(sub) -> None:
    from train.t2i.presets import T2I_PRESETS

    t = sub.add_parser("t2i", help="train the shapes text-to-image testbed (detector, VAE, detector on decoded "
                                   "images, diffusion) and assemble its StableDiffusionPipeline folder",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--preset", choices=sorted(T2I_PRESETS), help="default: gpu on a GPU, cpu elsewhere")
    t.add_argument("--output-dir", help="run folder (default: runs/t2i-<preset>)")
    t.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated, among {','.join(STAGES)} (default: all, in this order)")
    t.add_argument("--diffusion-steps", type=int, help="optimizer steps of the diffusion stage (default: the preset's)")
    t.add_argument("--diffusion-lr", type=float, help="learning rate of the diffusion stage (default: the preset's; "
                                                      "a run resumes only with the LR it started with)")
    t.add_argument("--diffusion-cooldown", type=int, metavar="STEPS",
                   help="decay the diffusion stage's LR linearly to 0 over its last STEPS steps (warmup-stable-"
                        "decay); branch a run into a cool-down by resuming a copy of one of its checkpoints")
    t.add_argument("--diffusion-init", metavar="MODEL",
                   help="start the diffusion stage from this testbed model's UNet and text encoder (same VAE, "
                        "fresh optimizer and EMA): e.g. continue a CPU-trained model on a GPU")
    t.add_argument("--diffusion-minutes", type=float,
                   help="finish the diffusion stage after this many minutes of training (its LR is constant, so "
                        "any step may end it; stage_done.json records the step)")
    t.add_argument("--time-budget", type=float, help="seconds for the whole command; stops with a checkpoint")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also checkpoint after this many minutes (0: off)")
    t.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16"],
                   help="auto: bf16 autocast on a GPU and on CPUs with native bf16, else fp32")
    t.add_argument("--data-workers", type=int,
                   help="processes that draw the batches (scenes, renders, captions) ahead of the steps; same "
                        "weights for any number (default: 0 on the CPU, up to 8 beside a GPU)")
    t.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    t.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")

    x = sub.add_parser("t2i-export", help="a diffusion checkpoint's EMA weights as a complete testbed model "
                                          "folder: measure a run mid-training (t2i-eval) or continue it elsewhere")
    x.add_argument("--run", default="runs/t2i-cpu", help="run folder of `python -m train t2i` (default: "
                                                          "runs/t2i-cpu); its detector, VAE and tokenizer are used")
    x.add_argument("--checkpoint", help="checkpoint folder (default: the run's newest diffusion checkpoint)")
    x.add_argument("--out", required=True, help="model folder to write (replaced if it exists)")

    add_study_command(sub)
    e = sub.add_parser("t2i-eval", help="measure a testbed model's quality bar with the detector",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", default="models/shapes-t2i", help="testbed model folder (default: the shipped one)")
    e.add_argument("--detector", help="detector folder (default: <model>/detector)")
    e.add_argument("--prompts", type=int, default=200, help="held-out captions (default: 200)")
    e.add_argument("--seeds", type=int, default=2, help="images per caption (default: 2)")
    e.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    e.add_argument("--cfg", type=float, help="guidance scale (default: the model's, from its negguide.json)")
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--tuning", action="store_true",
                   help="captions of a separate set; rates, per-image readings and failures only: choose settings "
                        "(e.g. --cfg) on it, then report on the default set, never chosen on")
    e.add_argument("--out", help="report folder (default: docs/t2i/testbed, with --tuning runs/t2i-tuning)")
    e.add_argument("--cpu", action="store_true")
    e.add_argument("--threads", type=int)


def add_study_command(sub) -> None:
    from train.t2i.study.sizes import STUDY_SIZES

    s = sub.add_parser("t2i-study", help="the papers' text-to-image claims measured on the testbed (critical step, "
                                         "removal with preservation, DNS/DNP, DNG on prompts): docs/t2i/study/",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  python -m train t2i-study                 # the cpu size: 32 min on 2 busy "
                              "cores\n  python -m train t2i-study --size smoke    # seconds (CI)\nFinished cells "
                              "are reused: an interrupted study continues where it stopped.")
    s.add_argument("--model", default="models/shapes-t2i", help="testbed model folder (default: the shipped one)")
    s.add_argument("--size", choices=sorted(STUDY_SIZES), default="cpu", help="cases and seeds (default: cpu)")
    s.add_argument("--out", default="runs/t2i-study", help="cells folder (default: runs/t2i-study)")
    s.add_argument("--report", default="docs/t2i/study", help="report folder (default: docs/t2i/study)")
    s.add_argument("--cfg", type=float, help="guidance scale (default: the model's)")
    s.add_argument("--batch-size", type=int, default=64, help="images per pipeline call (default: 64)")
    s.add_argument("--cpu", action="store_true")
    s.add_argument("--threads", type=int)


def study_cli(args) -> int:
    import torch

    from train.errors import UsageError
    from train.paths import make_output_folder
    from train.t2i.study.run import STUDY_SIZES, load_study, report_study, run_study

    model = Path(args.model)
    if not (model / "model_index.json").is_file():
        raise UsageError(f"{model} is not a testbed model folder (no model_index.json)")
    if args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        raise UsageError("--batch-size and --threads must be >= 1")
    make_output_folder(args.out, "--out")
    make_output_folder(args.report, "--report")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    study = load_study(model, None, STUDY_SIZES[args.size], Path(args.out), args.cfg, device)
    study.batch_size = args.batch_size
    print(f"t2i-study {args.size}: {study.planned} images on {device} ({torch.get_num_threads()} threads), cells in "
          f"{study.cells} (finished ones are reused), report into {args.report}", file=sys.stderr, flush=True)
    cells = run_study(study)
    report_study(study, cells, Path(args.report))
    print(f"report: {Path(args.report) / 'summary.md'}", file=sys.stderr)
    return 0


def _stages(text: str) -> list[str]:
    from train.errors import UsageError

    names = [s.strip() for s in text.split(",") if s.strip()]
    wrong = [s for s in names if s not in STAGES]
    if wrong or not names:
        raise UsageError(f"--stages: {', '.join(wrong) or 'empty'}; choose among {','.join(STAGES)}")
    return [s for s in STAGES if s in names]


def train_t2i(args) -> int:
    import dataclasses

    import torch
    from accelerate import Accelerator

    from train.classifier import trains_in_bf16
    from train.errors import UsageError
    from train.paths import make_output_folder
    from train.run_control import RunControl, check_run_options
    from train.t2i.presets import t2i_preset
    from train.t2i.stage import stage_finished

    control = RunControl(args.time_budget, args.checkpoint_minutes)
    check_run_options(args.time_budget, args.checkpoint_minutes, args.mixed_precision)
    stages = _stages(args.stages)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.diffusion_minutes is not None and args.diffusion_minutes <= 0:
        raise UsageError(f"--diffusion-minutes must be > 0, got {args.diffusion_minutes}")
    if args.diffusion_init and not Path(args.diffusion_init).is_dir():
        raise UsageError(f"--diffusion-init {args.diffusion_init}: no such folder")
    if args.data_workers is not None and args.data_workers < 0:
        raise UsageError(f"--data-workers must be >= 0, got {args.data_workers}")
    on_gpu = torch.cuda.is_available() and not args.cpu
    workers = args.data_workers
    if workers is None:  # beside a GPU the scenes are the bottleneck; keep two cores for the main process
        workers = max(0, min(8, (os.cpu_count() or 1) - 2)) if on_gpu else 0
    preset = t2i_preset(args.preset or ("gpu" if on_gpu else "cpu"))
    given = {k: v for k, v in (("steps", args.diffusion_steps), ("lr", args.diffusion_lr),
                               ("cooldown_steps", args.diffusion_cooldown)) if v is not None}
    if given:
        preset = dataclasses.replace(preset, diffusion=dataclasses.replace(preset.diffusion, **given))
    preset.validate()
    out = Path(args.output_dir or f"runs/t2i-{preset.name}")
    make_output_folder(out, "--output-dir")
    device = torch.device("cuda" if on_gpu else "cpu")
    precision = "bf16" if trains_in_bf16(device, args.mixed_precision) else "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=not on_gpu)
    print(f"t2i {preset.name}: stages {', '.join(stages)} in {out} on {accelerator.device} "
          f"({precision if precision != 'no' else 'fp32'}, {torch.get_num_threads()} threads, "
          f"{workers} data workers)", file=sys.stderr)
    with control:  # Ctrl-C: the step in progress ends, then a checkpoint
        for name in stages:
            if not _run(name, preset, out, control, accelerator, workers, args):
                print(f"time budget spent during stage {name}; the same command continues from its checkpoint",
                      file=sys.stderr)
                return 0
    if accelerator.is_main_process and all(stage_finished(out / s) for s in STAGES):
        assemble(out, out / "diffusion" / "final", out / "model")
    return 0


def assemble(run: Path, pipeline: Path, model: Path) -> None:
    """The shipped layout: the exported pipeline folder, the detector adapted to decoded images in `detector/`,
    float16 weights and `sha256.json`, written beside `model` and renamed into place."""
    from train.model_dir import record_hashes

    tmp = model.with_name(model.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pipeline, tmp)
    shutil.copytree(run / "detector-decoded" / "final", tmp / "detector")
    store_half(tmp)
    record_hashes(tmp)
    shutil.rmtree(model, ignore_errors=True)
    tmp.rename(model)
    print(f"testbed model saved in {model}; measure it with: python -m train t2i-eval --model {model}",
          file=sys.stderr)


def export_checkpoint(args) -> int:
    """`python -m train t2i-export`: the EMA weights of a diffusion checkpoint, assembled like a finished run."""
    import json
    import tempfile

    import torch

    from train.checkpoint import find_checkpoint, load_checkpoint
    from train.errors import UsageError
    from train.t2i.diffusion import DiffusionStage
    from train.t2i.stage import make_ema, stage_finished

    run = Path(args.run)
    for part in ("vae", "detector-decoded"):
        if not stage_finished(run / part):
            raise UsageError(f"{run / part} is unfinished: a model needs the run's VAE and adapted detector")
    config_file = run / "diffusion" / "config.json"
    if not config_file.is_file():
        raise UsageError(f"{run} has no diffusion stage ({config_file} is missing)")
    config = json.loads(config_file.read_text())
    checkpoint = find_checkpoint(Path(args.checkpoint) if args.checkpoint else run / "diffusion")
    preset = _preset_of(config)
    stage = DiffusionStage(preset, torch.device("cpu"), run / "vae" / "final", run / "tokenizer")
    nets = stage.build()
    step, weights, state = load_checkpoint(checkpoint, config, tuple(config))
    nets.load_state_dict(weights, strict=True)
    params = [p for p in nets.parameters() if p.requires_grad]
    ema = make_ema(params, preset)
    ema.load_state_dict(state["ema"])
    ema.copy_to(params)
    nets.eval()
    with tempfile.TemporaryDirectory() as tmp:
        stage.export(nets, Path(tmp) / "pipeline")
        assemble(run, Path(tmp) / "pipeline", Path(args.out))
    print(f"(diffusion step {step}, EMA weights, from {checkpoint})", file=sys.stderr)
    return 0


def _preset_of(config: dict):
    """The preset a diffusion stage was trained with: its networks, and its batch size where two share them."""
    import dataclasses

    from train.errors import UsageError
    from train.t2i.presets import T2I_PRESETS, StageSchedule

    same = [p for p in T2I_PRESETS.values() if p.unet == config["unet"] and p.text == config["text"]]
    if not same:
        raise UsageError("the run's networks are none of the presets' (train/t2i/presets.py)")
    schedule = config["schedule"]
    preset = next((p for p in same if p.diffusion.batch_size == schedule["batch_size"]), same[0])
    steps = schedule.get("steps", preset.diffusion.steps)
    return dataclasses.replace(preset, diffusion=StageSchedule(**{**schedule, "steps": steps}))


def store_half(folder: Path) -> None:
    """Rewrite every safetensors file of `folder` with its floating-point tensors in float16: half the size
    (the shipped folder must stay small); from_pretrained and the detector load them into float32 modules."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(path, "pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(half, path, metadata=metadata)


def _run(name: str, preset, out: Path, control, accelerator, data_workers: int, args) -> bool:
    from train.errors import UsageError
    from train.t2i.detector import DetectorStage
    from train.t2i.detector_decoded import DecodedDetectorStage
    from train.t2i.diffusion import DiffusionStage
    from train.t2i.stage import run_stage, stage_finished
    from train.t2i.vae import VAEStage

    needs = {"diffusion": ("vae",), "detector-decoded": ("detector", "vae")}.get(name, ())
    for part in needs:
        if not stage_finished(out / part):
            raise UsageError(f"the {name} stage needs the {part} stage: run --stages {part} first "
                             f"({out / part} is unfinished)")
    if name == "detector":
        stage = DetectorStage(preset, accelerator.device)
    elif name == "vae":
        stage = VAEStage(preset, accelerator.device)
    elif name == "detector-decoded":
        stage = DecodedDetectorStage(preset, accelerator.device, out / "detector" / "final", out / "vae" / "final")
    else:
        stage = DiffusionStage(preset, accelerator.device, out / "vae" / "final", out / "tokenizer",
                               args.diffusion_init)
        minutes = args.diffusion_minutes
        return run_stage(stage, out / name, control, accelerator, data_workers=data_workers,
                         finish_after_s=minutes * 60 if minutes else None)
    return run_stage(stage, out / name, control, accelerator, data_workers=data_workers)


def dispatch_t2i(args) -> int:
    if args.command == "t2i":
        return train_t2i(args)
    if args.command == "t2i-study":
        return study_cli(args)
    if args.command == "t2i-export":
        return export_checkpoint(args)
    from train.t2i.evaluate import evaluate_cli

    return evaluate_cli(args)
