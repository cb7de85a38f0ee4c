"""Run a sweep point by point; every finished point is on disk, so an interrupted sweep resumes where it stopped.

A point's files, in ``OUT/points/``: ``<name>.safetensors`` (the uint8 samples, their class labels, DNG's final
posterior) and ``<name>.json`` (settings, resume key, metrics, timing), the JSON written last and atomically: its
presence with the same key marks the point done. Under ``accelerate launch`` the pending points are dealt out
round-robin over the processes (sample i's noise does not depend on the process, see :mod:`train.removal.noise`),
and the main process merges ``points.json`` / ``points.csv`` when all are done.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from train.removal import metrics as M
from train.removal.models import StudyModels
from train.removal.noise import CommonNoise
from train.removal.points import Point, guidance_spec, point_settings, sampler_settings, settings_key, sweep_points
from train.removal.presets import RemovalPreset
from train.removal.sampler import BranchNetworks, sample_batch

CSV_COLUMNS = ("method", "scale", "p_max", "sampler", "steps", "samples", "forbidden_share", "kl_uniform_kept",
               "kl_data_kept", "fid_inception_kept", "fid_inception_all", "fid_classifier_kept", "fid_classifier_all",
               "class_histogram", "mean_final_posterior", "rows_per_sample_step", "diverged_samples", "seconds",
               "samples_per_second", "device", "seed", "sampler_variance", "dng_tracker", "dng_transition_variance",
               "dng_prior", "dng_temperature", "dng_offset", "sld_threshold", "sld_s_s", "sld_beta_m", "sld_s_m",
               "model_unconditional", "model_forget", "model_oracle", "key")


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def done_points(out: Path) -> dict[str, dict]:
    """Finished points on disk, by name (unreadable files count as not done)."""
    found = {}
    for path in sorted((out / "points").glob("*.json")):
        try:
            result = json.loads(path.read_text())
            found[result["name"]] = result
        except (OSError, ValueError, KeyError):
            continue
    return found


class Evaluator:
    """Labels and FIDs of a point's samples: the classifier and the reference statistics, loaded once."""

    def __init__(self, classifier, num_classes: int, removed: int, fid_networks: dict, references: dict,
                 data_histogram: torch.Tensor, device: torch.device):
        self.classifier, self.num_classes, self.removed = classifier, num_classes, removed
        self.fid_networks, self.references = fid_networks, references  # name -> network; (name, kept|all) -> stats
        self.data_histogram, self.device = data_histogram, device

    @torch.no_grad()
    def labels(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        probs = [self.classifier(M.from_uint8(images[i : i + batch_size]).to(self.device)).float().cpu()
                 for i in range(0, len(images), batch_size)]
        return torch.cat(probs).argmax(dim=1)

    def metrics(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        histogram = M.class_histogram(labels, self.num_classes)
        out = {
            "class_histogram": histogram.tolist(),
            "forbidden_share": M.forbidden_share(histogram, self.removed),
            "kl_uniform_kept": M.kl_divergence(M.kept_uniform_target(self.num_classes, self.removed), histogram),
            "kl_data_kept": M.kl_divergence(M.kept_data_target(self.data_histogram, self.removed), histogram),
        }
        from train.removal.fid import compute_stats, frechet_distance

        for name, network in self.fid_networks.items():
            stats = compute_stats(network, images)
            for selection in ("kept", "all"):
                out[f"fid_{name}_{selection}"] = frechet_distance(stats, self.references[(name, selection)])
        return out


def sample_point(point: Point, preset: RemovalPreset, models: StudyModels, device: torch.device,
                 autocast_dtype: torch.dtype | None):
    """All samples of a point (uint8), DNG's final posterior per sample, the network rows per sample and step
    (1 unguided, 2 for NP / SLD / DNG on DDPM, more where the flow tracker probes), p/lambda curves, and how many
    samples overflowed to inf/NaN."""
    spec = guidance_spec(point, preset)
    sampler = sampler_settings(point, preset)
    positive = models.oracle if point.method == "oracle" else models.unconditional
    networks = BranchNetworks(positive, models.forget, autocast_dtype)
    noise = CommonNoise(preset.seed, models.image_shape, device)
    images, final_p, rows, diverged = [], [], 0, 0
    progress = tqdm(total=preset.samples, desc=point.name, unit="sample", leave=False, disable=None)
    for start in range(0, preset.samples, preset.batch_size):
        indices = range(start, min(preset.samples, start + preset.batch_size))
        x, run, batch_rows, posterior = sample_batch(networks, models.schedule, spec, sampler, indices, noise,
                                                     record="none")
        progress.update(len(indices))
        finite = torch.isfinite(x).flatten(1).all(1)
        diverged += int((~finite).sum())
        # an extreme scale can overflow a sample: it is kept as the saturated image it is, and counted
        images.append(M.to_uint8(torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)).cpu())
        rows += batch_rows
        if posterior is not None:
            final_p.append(posterior.float().cpu())
    progress.close()
    curves = None
    if final_p and preset.curve_samples:
        curves = posterior_curves(networks, models, spec, sampler, noise, min(preset.curve_samples, preset.samples))
    rows_per_sample_step = rows / (preset.samples * sampler.steps)
    return torch.cat(images), (torch.cat(final_p) if final_p else None), rows_per_sample_step, curves, diverged


def posterior_curves(networks, models, spec, sampler, noise, count: int) -> dict:
    """p(t) and lambda(t) of the first ``count`` samples (the same trajectories as in the point: common noise)."""
    _, run, _, _ = sample_batch(networks, models.schedule, spec, sampler, range(count), noise, record="per_image")
    records = [r for r in run.records if "p" in r]
    return {"step": [r["step"] for r in records], "sigma": [r["sigma"] for r in records],
            "p": [r["p"] for r in records], "lambda": [r["lambda"] for r in records]}


def run_point(point: Point, preset: RemovalPreset, models: StudyModels, evaluator: Evaluator, out: Path,
              device: torch.device, autocast_dtype: torch.dtype | None) -> dict:
    settings = point_settings(point, preset, _models_of(point, models))
    started = time.perf_counter()
    images, final_p, rows_per_step, curves, diverged = sample_point(point, preset, models, device, autocast_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    labels = evaluator.labels(images)
    result = {"name": point.name, "key": settings_key(settings), **asdict(point), "samples": preset.samples,
              **evaluator.metrics(images, labels),
              "mean_final_posterior": float(final_p.mean()) if final_p is not None else None,
              "rows_per_sample_step": round(rows_per_step, 4), "diverged_samples": diverged,
              "seconds": round(seconds, 2),
              "samples_per_second": round(preset.samples / seconds, 3), "device": _device_name(device),
              "torch": torch.__version__, "settings": settings, "curves": curves}
    tensors = {"images": images.contiguous(), "labels": labels.contiguous()}
    if final_p is not None:
        tensors["final_posterior"] = final_p.contiguous()
    folder = out / "points"
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / f"{point.name}.safetensors", lambda p: save_file(tensors, str(p)))
    _write_atomically(folder / f"{point.name}.json", lambda p: p.write_text(json.dumps(result, indent=1)))
    return result


def _models_of(point: Point, models: StudyModels) -> dict[str, str]:
    """The weights a point's images depend on (an oracle point: only the oracle)."""
    if point.method == "oracle":
        return {"oracle": models.hashes["oracle"]}
    if point.method == "none":
        return {"unconditional": models.hashes["unconditional"]}
    return {k: models.hashes[k] for k in ("unconditional", "forget")}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def pending_points(preset: RemovalPreset, models: StudyModels, out: Path) -> tuple[list[Point], dict[str, dict]]:
    """The sweep's points not yet on disk with their current key, and the finished ones."""
    finished = done_points(out)
    todo, kept = [], {}
    for point in sweep_points(preset, models.oracle is not None):
        key = settings_key(point_settings(point, preset, _models_of(point, models)))
        if finished.get(point.name, {}).get("key") == key:
            kept[point.name] = finished[point.name]
        else:
            todo.append(point)
    return todo, kept


def run_sweep(preset: RemovalPreset, models: StudyModels, evaluator: Evaluator, out: Path, device: torch.device,
              autocast_dtype: torch.dtype | None, rank: int = 0, world: int = 1, progress=print) -> list[Point]:
    """Run this process's share of the pending points; returns the points it ran."""
    todo, kept = pending_points(preset, models, out)
    mine = todo[rank::world]
    if rank == 0:
        progress(f"{len(kept)} of {len(kept) + len(todo)} points already in {out / 'points'}; "
                 f"{len(todo)} to run over {world} process(es)")
    for n, point in enumerate(mine, 1):
        result = run_point(point, preset, models, evaluator, out, device, autocast_dtype)
        progress(f"[{rank}] {n}/{len(mine)} {point.name}: forbidden {result['forbidden_share']:.3f}, "
                 f"KL {result['kl_uniform_kept']:.3f}, {result['samples_per_second']:.1f} samples/s")
    return mine


def merge_points(preset: RemovalPreset, models: StudyModels, out: Path, report: Path) -> list[dict]:
    """``report``/points.json (every point, full) and points.csv (one row per point, the CSV_COLUMNS) of the
    sweep in ``out``."""
    todo, kept = pending_points(preset, models, out)
    if todo:
        raise RuntimeError(f"{len(todo)} points are not finished: {', '.join(p.name for p in todo[:5])}")
    order = [p.name for p in sweep_points(preset, models.oracle is not None)]
    rows = [kept[name] for name in order]
    report.mkdir(parents=True, exist_ok=True)
    _write_atomically(report / "points.json", lambda p: p.write_text(json.dumps(rows, indent=1)))

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(csv_row(row) for row in rows)

    _write_atomically(report / "points.csv", write_csv)
    return rows


def csv_row(result: dict) -> dict:
    """A point's flat CSV row: its metrics and every setting behind it (the switches, seed, model hashes)."""
    settings = result["settings"]
    row = dict(result, class_histogram=" ".join(map(str, result["class_histogram"])), seed=settings["seed"],
               sampler_variance=settings["sampler_variance"])
    row |= {f"dng_{k}": v for k, v in settings.get("dng", {}).items() if k != "p_max"}
    row |= {f"sld_{k}": v for k, v in settings.get("sld", {}).items()}
    row |= {f"model_{role}": digest[:16] for role, digest in settings["models"].items()}
    return row


def load_point_tensors(out: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(out / "points" / f"{name}.safetensors"))
