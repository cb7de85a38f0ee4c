"""Command line of the train package: `python -m train {ddpm,classifier,sample} ...`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from train.errors import Interrupted, UsageError
from train.presets import (
    CLASSIFIER_PRESETS,
    DDPM_PRESETS,
    default_classifier_preset,
    default_ddpm_preset,
    override,
)
from train.removal.cli import add_removal_commands
from train.removal.cli import dispatch as dispatch_removal
from train.run_control import DEFAULT_CHECKPOINT_MINUTES, now, seconds_since_process_start
from train.t2i.cli import add_t2i_commands, dispatch_t2i

EPILOG = """examples:
  python -m train classifier --dataset mnist                       # CNN, >= 99.3% test accuracy
  python -m train classifier --dataset cifar10 --preset cifar10-wide   # whitened CNN, wider and longer
  python -m train ddpm --dataset mnist --preset mnist-cpu          # laptop CPU (the default without a GPU)
  python -m train ddpm --dataset mnist --only-class 0              # the single-class "to-forget" model
  accelerate launch -m train ddpm --dataset cifar10                # one or many GPUs, same command
  python -m train ddpm --dataset mnist --resume runs/ddpm-mnist    # continue exactly after a crash or Ctrl-C
  python -m train classifier --dataset cifar10 --resume runs/classifier-cifar10   # likewise
  python -m train sample --model runs/ddpm-mnist/model --classifier runs/classifier-mnist
  python -m train reproduce-removal --dataset mnist --remove 0     # the DNG paper's class-removal study
  python -m train removal --help                                   # the same study on models you have
  python -m train t2i                                              # the shapes text-to-image testbed
Data: the offline copies in ../shared/datasets are used when present; otherwise give --data-dir DIR
(an existing copy) or --download (torchvision fetches it). Run folders are relative to the current directory.
Ctrl-C stops after the current step with a checkpoint and prints the --resume command. See docs/training.md."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to options whose default is a value of their own; options whose default comes
    from the preset say so in their help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        has_own_default = action.default is not None and action.default is not False
        if has_own_default and action.default is not argparse.SUPPRESS and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def _per_preset(presets: dict, field: str) -> str:
    """'(default: X)' when every preset agrees, else each preset's value: the defaults --help would hide."""
    values = {name: getattr(preset, field) for name, preset in sorted(presets.items())}
    shown = {name: f"{v:g}" if isinstance(v, float) else str(v) for name, v in values.items()}
    if len(set(shown.values())) == 1:
        return f"(default: {next(iter(shown.values()))})"
    return "(default: the preset's; " + ", ".join(f"{name} {v}" for name, v in shown.items()) + ")"


def _with_defaults(text: str, presets: dict, field: str) -> str:
    return f"{text} {_per_preset(presets, field)}"


def _data_args(p: argparse.ArgumentParser, presets: dict, run_folder: str) -> None:
    p.add_argument("--dataset", required=True, help="mnist or cifar10")
    p.add_argument("--data-dir", help="folder with an existing copy (default: ../shared/datasets/<dataset>)")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision into --data-dir")
    p.add_argument("--limit", type=int, help="a fixed random subset of N images (after class filters)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--seed", type=int, help=_with_defaults("seed of weights, batch order, noise", presets, "seed"))
    p.add_argument("--batch-size", type=int, help=_with_defaults("per-process batch size", presets, "batch_size"))
    p.add_argument("--lr", type=float, help=_with_defaults("peak learning rate", presets, "lr"))
    p.add_argument("--output-dir", help=f"run folder (default: {run_folder})")


def _run_args(p: argparse.ArgumentParser, checkpoint_every: str, budget_covers: str, precision_auto: str) -> None:
    p.add_argument("--checkpoint-every", type=int, help=f"steps between resumable checkpoints {checkpoint_every}")
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=DEFAULT_CHECKPOINT_MINUTES,
        help="also checkpoint after this many minutes since the last checkpoint (0: off)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        help=f"seconds for the whole command: training stops in time to save a checkpoint and {budget_covers}",
    )
    p.add_argument(
        "--resume",
        help="run folder or checkpoint-<step> folder to continue from (its preset is used unless --preset is given)",
    )
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16"], help=precision_auto)


def _preset_for(preset, dataset: str):
    """A preset chosen with --preset must belong to the --dataset of the command."""
    if preset.dataset != dataset:
        raise UsageError(f"preset {preset.name} is for {preset.dataset}, not {dataset}")
    return preset


def _preset_name(args: argparse.Namespace, presets: dict, default: str) -> str:
    """--preset, else the preset the --resume checkpoint was trained with, else `default`."""
    if args.preset:
        return args.preset
    if args.resume:
        from train.checkpoint import checkpoint_config, find_checkpoint

        stored = checkpoint_config(find_checkpoint(Path(args.resume))).get("name")
        if stored in presets:
            return stored
    return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train the DDPMs and classifiers of negguide's class-removal evaluation.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    commands = "{ddpm,classifier,sample,removal,reproduce-removal,t2i,t2i-eval,t2i-export,t2i-study}"
    sub = parser.add_subparsers(dest="command", required=True, metavar=commands)
    _add_ddpm_command(sub)
    _add_classifier_command(sub)
    _add_sample_command(sub)
    add_removal_commands(sub)
    add_t2i_commands(sub)
    return parser


def _add_ddpm_command(sub) -> None:
    help_text = "train an unconditional or single-class DDPM (diffusers UNet2DModel)"
    d = sub.add_parser("ddpm", help=help_text, formatter_class=HelpFormatter)
    _data_args(d, DDPM_PRESETS, "runs/ddpm-<preset>, plus -only<K> / -drop<K>")
    d.add_argument(
        "--preset",
        choices=sorted(DDPM_PRESETS),
        help="default: mnist on a GPU, mnist-cpu without one (--cpu included); cifar10 for cifar10",
    )
    d.add_argument("--only-class", type=int, help="train on class K only (the 'to-forget' model)")
    d.add_argument("--drop-class", type=int, help="train on every class except K")
    recipes = "ours: AdamW + EMA, constant LR; authors: RAdam, warm-up + cosine, no EMA"
    d.add_argument("--recipe", choices=["ours", "authors"], help=_with_defaults(recipes, DDPM_PRESETS, "recipe"))
    for option, kind, text in [
        ("--max-steps", int, "total optimizer steps"),
        ("--warmup-steps", int, "steps of linear LR warm-up"),
        ("--ema-decay", float, "decay of the weights' EMA (recipe ours)"),
        ("--sample-every", int, "steps between PNG sample grids, 0: only at the end"),
        ("--sample-steps", int, "DDIM steps of the preview grids"),
        ("--grid-size", int, "images per preview grid"),
    ]:
        field = option[2:].replace("-", "_")
        d.add_argument(option, type=kind, help=_with_defaults(text, DDPM_PRESETS, field))
    _run_args(
        d,
        _per_preset(DDPM_PRESETS, "checkpoint_every"),
        "model/; a preview grid that would not fit is skipped",
        "auto: bf16 autocast on a GPU, fp32 on the CPU",
    )


def _add_classifier_command(sub) -> None:
    c = sub.add_parser(
        "classifier", help="train the MNIST CNN or the CIFAR-10 whitened CNN", formatter_class=HelpFormatter
    )
    _data_args(c, CLASSIFIER_PRESETS, "runs/classifier-<preset>")
    c.add_argument(
        "--preset",
        choices=sorted(CLASSIFIER_PRESETS),
        help="default: mnist where training runs in bf16 (a GPU, a CPU with AVX512-BF16/AMX), mnist-small where "
        "it runs in fp32; cifar10 for cifar10",
    )
    c.add_argument(
        "--epochs", type=float, help=_with_defaults("passes over the training set", CLASSIFIER_PRESETS, "epochs")
    )
    c.add_argument("--test-limit", type=int, help="evaluate on a fixed random subset of N test images")
    bf16_where = "auto: bf16 autocast on a GPU and on CPUs with native bf16 (AVX512-BF16, AMX), else fp32"
    _run_args(c, "(default: once per epoch)", "to evaluate and save the classifier", bf16_where)


def _add_sample_command(sub) -> None:
    help_text = "sample a trained model/ and label the samples with a classifier"
    s = sub.add_parser("sample", help=help_text, formatter_class=HelpFormatter)
    s.add_argument("--model", required=True, help="the model/ folder of a ddpm run")
    s.add_argument("--classifier", help="folder of a trained classifier (default: no labels, only samples)")
    s.add_argument("--num", type=int, default=256, help="number of samples")
    s.add_argument("--steps", type=int, default=100, help="DDIM steps")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    s.add_argument("--grid", help="write the first 64 samples to this PNG")
    s.add_argument("--cpu", action="store_true", help="sample on the CPU even if a GPU is present")


def run(argv: list[str] | None = None, command_started: float | None = None) -> int:
    """Parse and run a command; --time-budget counts from `command_started` (run_control's clock; default: now)."""
    args = build_parser().parse_args(argv)
    args.command_started = now() if command_started is None else command_started
    if args.command in ("removal", "reproduce-removal"):
        return dispatch_removal(args)
    if args.command in ("t2i", "t2i-eval", "t2i-export", "t2i-study"):
        return dispatch_t2i(args)
    if args.command == "sample":
        from train.label_samples import sample_and_label

        sample_and_label(args.model, args.classifier, args.num, args.steps, args.seed, args.grid, args.cpu)
        return 0

    from train.data import check_class, check_dataset

    check_dataset(args.dataset)
    if args.command == "classifier":
        _train_classifier(args)
        return 0
    check_class(args.dataset, args.only_class, "--only-class")
    check_class(args.dataset, args.drop_class, "--drop-class")
    _train_ddpm(args)
    return 0


def _train_classifier(args: argparse.Namespace) -> None:
    from train.classifier import train_classifier, training_device, trains_in_bf16

    bf16 = trains_in_bf16(training_device(args.cpu), args.mixed_precision)
    name = _preset_name(args, CLASSIFIER_PRESETS, default_classifier_preset(args.dataset, bf16))
    preset = override(
        _preset_for(CLASSIFIER_PRESETS[name], args.dataset),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    train_classifier(
        preset,
        args.output_dir,
        args.data_dir,
        args.download,
        args.limit,
        args.test_limit,
        args.cpu,
        _budget_left(args),
        args.mixed_precision,
        args.resume,
        checkpoint_minutes=args.checkpoint_minutes,
    )


def _train_ddpm(args: argparse.Namespace) -> None:
    import torch

    from train.ddpm import DataOptions, train_ddpm

    on_gpu = torch.cuda.is_available() and not args.cpu
    name = _preset_name(args, DDPM_PRESETS, default_ddpm_preset(args.dataset, on_gpu))
    preset = override(
        _preset_for(DDPM_PRESETS[name], args.dataset),
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        recipe=args.recipe,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        sample_steps=args.sample_steps,
        grid_size=args.grid_size,
    )
    data = DataOptions(args.data_dir, args.download, args.only_class, args.drop_class, args.limit)
    train_ddpm(
        preset,
        data,
        args.output_dir,
        args.resume,
        args.mixed_precision,
        args.cpu,
        time_budget_s=_budget_left(args),
        checkpoint_minutes=args.checkpoint_minutes,
    )


def _budget_left(args: argparse.Namespace) -> float | None:
    """What is left of --time-budget now that the training code is imported (diffusers alone can take 10 s)."""
    if args.time_budget is None or args.time_budget <= 0:
        return args.time_budget  # none, or a value the training functions refuse as it was given
    return max(args.time_budget - (now() - args.command_started), 1e-3)  # spent already: one step, then stop


def _without_resume(argv: list[str]) -> list[str]:
    """`argv` less its --resume option (argparse also accepts unambiguous prefixes, such as --res, and --resume=X)."""
    kept, skip_value = [], False
    for token in argv:
        if skip_value:
            skip_value = False
            continue
        name = token.split("=", 1)[0]
        if len(name) > 2 and "--resume".startswith(name):
            skip_value = "=" not in token
            continue
        kept.append(token)
    return kept


def resume_hint(argv: list[str], run_dir: Path) -> str:
    """The line printed after Ctrl-C: the command that continues the run exactly where it stopped."""
    from train.checkpoint import list_checkpoints

    if argv[0] not in ("ddpm", "classifier"):  # a command that drives training itself resumes when rerun
        return f"interrupted; the same command continues from {run_dir}: {shlex.join(['python', '-m', 'train', *argv])}"
    found = list_checkpoints(Path(run_dir))
    if not found:
        return f"interrupted before the first checkpoint: nothing to resume in {run_dir}"
    command = shlex.join(["python", "-m", "train", *_without_resume(argv), "--resume", str(run_dir)])
    return f"interrupted ({found[-1].name} saved); continue exactly with: {command}"


def main(argv: list[str] | None = None) -> int:
    """`python -m train`; argv None: this process's command line, whose --time-budget counts from its start."""
    command_started = now() - (seconds_since_process_start() if argv is None else 0.0)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run(argv, command_started)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(resume_hint(argv, stop.run_dir), file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a Ctrl-C
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
