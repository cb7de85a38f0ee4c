"""`python -m train reproduce-removal`: every model of the study, then the sweep and the report, in one command.

Per dataset and removed class K it trains (or reuses) four models in ``--runs`` (default
``runs/removal-<dataset>-<K>``, ``-tiny`` appended for tiny training): the classifier, the all-class DDPM, the
class-K-only DDPM (the "to-forget" model) and the class-K-dropped DDPM (the retrained oracle). A finished model
is reused; an unfinished one (a crash, a Ctrl-C, a time budget) resumes exactly from its newest checkpoint; then
``removal`` runs (resuming its points). Each model is trained by the training functions themselves, as the
`python -m train ...` command printed before it would train it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from train.checkpoint import checkpoint_config, find_checkpoint, list_checkpoints
from train.data import check_class, check_dataset, load_dataset
from train.errors import UsageError
from train.presets import CLASSIFIER_PRESETS, DDPM_PRESETS, default_classifier_preset, override
from train.removal.study import pick_device, run_removal


@dataclass(frozen=True)
class TrainingPlan:
    """What to train for one study: the DDPM preset and each DDPM's steps, the classifier preset; the limits and
    epochs (None: the presets') make a plan small enough for a test."""

    ddpm_preset: str
    all_steps: int
    only_steps: int  # one class holds a tenth of the images: fewer steps see it as many times
    drop_steps: int
    classifier_preset: str | None  # None: the train command's default for the machine (fp32 CPUs: mnist-small)
    classifier_epochs: int | None = None
    classifier_limit: int | None = None  # a fixed random subset of the training images
    classifier_test_limit: int | None = None
    ddpm_limit: int | None = None


# cpu: the 0.28 M-parameter UNet, ~1 h per 8000 steps on one core of the 2-core build machine (fp32).
# gpu: the 6.5 M-parameter UNet of the `mnist` preset for its 30k steps (the all-class and oracle models).
# tiny: minutes on a CPU, for a first look at the whole study (`--preset tiny` picks it): a 0.07 M-parameter UNet
# and a one-epoch small classifier on a 12,000-image subset.
TRAINING_PLANS = {
    ("mnist", "tiny"): TrainingPlan("mnist-tiny", 600, 300, 600, "mnist-small", classifier_epochs=1,
                                    classifier_limit=12_000, classifier_test_limit=2_000, ddpm_limit=None),
    ("mnist", "cpu"): TrainingPlan("mnist-cpu", 8000, 4000, 8000, None),
    ("mnist", "gpu"): TrainingPlan("mnist", 30_000, 10_000, 30_000, None),
    ("cifar10", "gpu"): TrainingPlan("cifar10", 800_000, 100_000, 800_000, "cifar10"),
}


def training_plan(dataset: str, training: str) -> TrainingPlan:
    if (dataset, training) not in TRAINING_PLANS:
        raise UsageError(f"no {training} training plan for {dataset}: CIFAR-10 DDPMs need a GPU (--training gpu), or "
                         "run `python -m train removal` on models you have")
    return TRAINING_PLANS[(dataset, training)]


def ddpm_finished(run: Path, max_steps: int) -> bool:
    """model/ saved and a checkpoint at (or past) the planned last step."""
    steps = [int(p.name.split("-")[1]) for p in list_checkpoints(run)] if run.is_dir() else []
    return (run / "model" / "config.json").is_file() and bool(steps) and max(steps) >= max_steps


def classifier_finished(run: Path) -> bool:
    """A classifier saved at the end of its schedule (a time-budget stop keeps its checkpoints to resume)."""
    config = run / "classifier.json"
    return config.is_file() and not list_checkpoints(run) and "test_accuracy" in json.loads(config.read_text())


def _train(train, run: Path, finished: bool) -> None:
    """Train one model with ``train(run, resume)``: skipped when finished, resumed when ``run`` has a checkpoint,
    started over (the folder moved aside) when it stopped before its first one."""
    if finished:
        print(f"reusing {run}", file=sys.stderr)
        return
    if run.exists() and not list_checkpoints(run):  # stopped before its first checkpoint: nothing to resume
        aside = run.with_name(f"{run.name}.no-checkpoint-{int(time.time())}")
        run.rename(aside)
        print(f"{run} had no checkpoint to resume from; moved it to {aside} and starting over", file=sys.stderr)
    train(run, run.exists())


def _announce(command: list[str], run: Path, resume: bool) -> None:
    """The `python -m train` command that trains the same model, for the user to see (and rerun by hand)."""
    print("$ python -m train " + shlex.join([*command, "--resume" if resume else "--output-dir", str(run)]),
          file=sys.stderr)


def _options(**values) -> list[str]:
    return [token for name, value in values.items() if value is not None
            for token in (f"--{name.replace('_', '-')}", str(value))]


def _stored_preset(run: Path, presets: dict) -> str | None:
    """The preset a run folder's checkpoint was trained with (a resumed run keeps its preset)."""
    stored = checkpoint_config(find_checkpoint(run)).get("name")
    return stored if stored in presets else None


def train_models(dataset: str, removed: int, runs: Path, plan: TrainingPlan, cpu: bool, data_dir=None,
                 download: bool = False) -> dict[str, Path]:
    """The study's four model folders, trained or resumed as needed (``data_dir`` / ``download``: where the
    dataset is, as the train commands take them)."""
    from train.classifier import train_classifier, training_device, trains_in_bf16
    from train.ddpm import DataOptions, train_ddpm

    def classifier(run: Path, resume: bool) -> None:
        default = default_classifier_preset(dataset, trains_in_bf16(training_device(cpu), "auto"))
        name = plan.classifier_preset or (resume and _stored_preset(run, CLASSIFIER_PRESETS)) or default
        _announce(["classifier", "--dataset", dataset, "--preset", name, *_options(
            epochs=plan.classifier_epochs, limit=plan.classifier_limit, test_limit=plan.classifier_test_limit),
            *(["--cpu"] if cpu else [])], run, resume)
        preset = override(CLASSIFIER_PRESETS[name], epochs=plan.classifier_epochs)
        train_classifier(preset, None if resume else run, data_dir, download, limit=plan.classifier_limit,
                         test_limit=plan.classifier_test_limit, cpu=cpu, resume=run if resume else None)

    def ddpm(steps: int, only: int | None, drop: int | None):
        def train(run: Path, resume: bool) -> None:
            _announce(["ddpm", "--dataset", dataset, "--preset", plan.ddpm_preset, "--max-steps", str(steps),
                       "--sample-every", "0", *_options(only_class=only, drop_class=drop, limit=plan.ddpm_limit),
                       *(["--cpu"] if cpu else [])], run, resume)
            preset = override(DDPM_PRESETS[plan.ddpm_preset], max_steps=steps, sample_every=0)
            train_ddpm(preset, DataOptions(data_dir, download, only_class=only, drop_class=drop, limit=plan.ddpm_limit),
                       None if resume else run, run if resume else None, cpu=cpu)

        return train

    folders = {"classifier": runs / "classifier"}
    _train(classifier, folders["classifier"], classifier_finished(folders["classifier"]))
    ddpms = {"uncond": ("all", plan.all_steps, None, None),
             "forget": (f"only{removed}", plan.only_steps, removed, None),
             "oracle": (f"drop{removed}", plan.drop_steps, None, removed)}
    for role, (name, steps, only, drop) in ddpms.items():
        run = runs / f"ddpm-{name}"
        _train(ddpm(steps, only, drop), run, ddpm_finished(run, steps))
        folders[role] = run / "model"
    return folders


def reproduce_removal(args) -> Path:
    check_dataset(args.dataset)
    check_class(args.dataset, args.remove, "--remove")
    tiny = args.preset in ("tiny", f"{args.dataset}-tiny")
    training = args.training or ("tiny" if tiny else "gpu" if pick_device(args.cpu).type == "cuda" else "cpu")
    # tiny models get their own folder: a later full-size run must not resume from them
    runs = Path(args.runs or f"runs/removal-{args.dataset}-{args.remove}{'-tiny' if training == 'tiny' else ''}")
    if runs.exists() and not runs.is_dir():
        raise UsageError(f"--runs {runs} is a file, not a folder")
    plan = training_plan(args.dataset, training)
    runs.mkdir(parents=True, exist_ok=True)
    if args.download:  # once, into --data-dir (default ./data): every training and the sweep then read it there
        from train.data import resolve_data_dir

        args.data_dir, args.download = resolve_data_dir(args.dataset, args.data_dir, True), False
        for split in ("train", "test"):
            load_dataset(args.dataset, split, args.data_dir, download=True)
    folders = train_models(args.dataset, args.remove, runs, plan, args.cpu, args.data_dir)
    args.uncond, args.forget, args.oracle = folders["uncond"], folders["forget"], folders["oracle"]
    args.classifier = folders["classifier"]
    args.out, args.report = runs / "sweep", args.report or runs / "report"
    print(f"$ python -m train removal --dataset {args.dataset} --remove {args.remove} --uncond {args.uncond} "
          f"--forget {args.forget} --oracle {args.oracle} --classifier {args.classifier} --out {args.out} "
          f"--report {args.report}", file=sys.stderr)
    return run_removal(args)
