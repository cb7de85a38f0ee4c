"""`python -m train removal`: check every input, run (or resume) the sweep, merge the points, write the report.

Everything the sweep needs is checked before the first sample: the model folders and their schedules, the
classifier, the dataset for the FID reference, the FID network, the settings. Under ``accelerate launch`` the
main process prepares the FID reference statistics first (the others then read the cache).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import torch

from train.data import check_class, check_dataset, load_dataset
from train.errors import UsageError
from train.removal.evaluation import (
    Evaluator,
    FloorSource,
    build_network_reference,
    fill_feature_cache,
    kept_and_all_selections,
)
from train.removal.models import load_study_models
from train.removal.presets import RemovalPreset, removal_preset
from train.removal.sweep import merge_points, run_sweep

PRESET_OVERRIDES = {  # CLI argument -> preset field
    "methods": "methods", "samples": "samples", "batch_size": "batch_size", "seed": "seed", "samplers": "samplers",
    "ddim_methods": "ddim_methods", "ddpm_steps": "ddpm_steps", "ddim_steps": "ddim_steps",
    "sampler_variance": "sampler_variance", "transition_variance": "transition_variance",
    "np_scales": "np_scales", "sld_scales": "sld_scales", "dng_lambda0": "dng_lambda0", "dng_p_max": "dng_p_max",
    "dng_prior": "dng_prior", "dng_temperature": "dng_temperature", "dng_offset": "dng_offset",
    "dng_min_step_ratio": "dng_min_step_ratio",
    "sld_threshold": "sld_threshold", "sld_s_s": "sld_s_s", "sld_beta_m": "sld_beta_m", "sld_s_m": "sld_s_m",
    "fid_reference_count": "fid_reference_count", "fid_resamples": "fid_resamples",
    "schedule_lambda0": "schedule_lambda0", "schedule_p_max": "schedule_p_max", "decisive_samples": "decisive_samples",
    "decisive_np_scales": "decisive_np_scales", "decisive_sld_scales": "decisive_sld_scales",
    "decisive_dng_lambda0": "decisive_dng_lambda0", "decisive_dng_p_max": "decisive_dng_p_max",
}


def preset_from_args(args, device: torch.device) -> RemovalPreset:
    overrides = {field: getattr(args, arg, None) for arg, field in PRESET_OVERRIDES.items()}
    fid = getattr(args, "fid", None)
    if fid is not None:
        overrides["fid_networks"] = () if "none" in fid else fid
    return removal_preset(args.preset, args.dataset, device.type, removed=args.remove, **overrides)


def pick_device(cpu: bool) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def build_evaluator(preset: RemovalPreset, classifier_dir, data_dir, out: Path, device: torch.device,
                    rank: int = 0, world: int = 1, wait=lambda: None) -> Evaluator:
    """The classifier, the FID networks and their references (kept-class features, kept and all-class
    statistics; cached under ``out/fid-reference``, featurised by the ``world`` processes together, this one
    ``rank``), and where the real-vs-real floor's images come from."""
    from train.classifier_io import load_classifier
    from train.removal import fid

    classifier = load_classifier(classifier_dir, device)
    num_classes = len(classifier.classes)
    train_labels = load_dataset(preset.dataset, "train", data_dir).labels
    data_histogram = torch.bincount(train_labels, minlength=num_classes)
    networks = {}
    for name in preset.fid_networks:
        networks[name] = (fid.InceptionFeatures(device) if name == "inception"
                          else fid.ClassifierFeatures(classifier_dir, device))
    cache = out / "fid-reference"
    selections = [featurise for network in networks.values()
                  for featurise in kept_and_all_selections(network, preset.dataset, preset.removed, cache, data_dir,
                                                           limit=preset.fid_reference_count)]
    fill_feature_cache(selections, rank, world, wait)  # the processes share out the featurising, then read it all
    references = {name: build_network_reference(network, preset.dataset, preset.removed, cache, data_dir,
                                                preset.fid_reference_count, num_classes, device)
                  for name, network in networks.items()}
    return Evaluator(classifier, num_classes, preset.removed, references, data_histogram, device,
                     FloorSource(preset.dataset, data_dir, cache), preset.fid_resamples)


def check_shapes(dataset: str, model_shape: tuple[int, ...], classifier_dir) -> None:
    """The models, the classifier and the dataset must speak the same images, before a sweep spends hours."""
    from train.classifier_io import load_classifier
    from train.data import IMAGE_SHAPES

    classifier_shape = tuple(load_classifier(classifier_dir).config["input_shape"])
    data_shape = IMAGE_SHAPES[dataset]
    if not (tuple(model_shape) == classifier_shape == data_shape):
        raise UsageError(f"image shapes differ: the models sample {tuple(model_shape)}, the classifier reads "
                         f"{classifier_shape}, {dataset} images are {data_shape} (channels, height, width): "
                         "were the models and the classifier trained on this --dataset?")


def run_removal(args) -> Path:
    from accelerate import PartialState

    check_dataset(args.dataset)
    check_class(args.dataset, args.remove, "--remove")
    if args.threads:
        torch.set_num_threads(args.threads)
    # Barriers here can wait for hours on a CPU (the main process fills the reference cache; the np-schedule phase
    # waits for the slowest process's last point): gloo's default 30-minute timeout would end the sweep.
    state = PartialState(cpu=args.cpu, timeout=timedelta(hours=48))
    device = state.device if not args.cpu else torch.device("cpu")
    preset = preset_from_args(args, device)
    out, report = Path(args.out), Path(getattr(args, "report", None) or args.out)
    for option, folder in (("--out", out), ("--report", report)):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{option} {folder} is a file, not a folder")
    if getattr(args, "download", False):  # fetch both splits now (the FID reference and the floor read them)
        from train.data import resolve_data_dir

        args.data_dir = resolve_data_dir(args.dataset, args.data_dir, True)
        for split in ("train", "test"):
            load_dataset(args.dataset, split, args.data_dir, download=True)
    models = load_study_models(args.uncond, args.forget, args.oracle, device)
    check_shapes(args.dataset, models.image_shape, args.classifier)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = build_evaluator(preset, args.classifier, args.data_dir, out, device, state.process_index,
                                state.num_processes, state.wait_for_everyone)
    if state.is_main_process:
        (out / "study.json").write_text(json.dumps({"preset": preset.to_dict(), "models": models.hashes,
                                                    "folders": {"uncond": str(args.uncond),
                                                                "forget": str(args.forget),
                                                                "oracle": args.oracle and str(args.oracle),
                                                                "classifier": str(args.classifier)}}, indent=1))
    autocast = torch.bfloat16 if device.type == "cuda" else None
    run_sweep(preset, models, evaluator, out, device, autocast, state.process_index, state.num_processes,
              wait=state.wait_for_everyone)
    state.wait_for_everyone()
    if state.is_main_process:
        rows = merge_points(preset, models, out, report)
        from train.removal.report import write_report

        write_report(rows, preset, out, report)
        print(f"points: {report / 'points.csv'}; plots and summary: {report}")
    return out
