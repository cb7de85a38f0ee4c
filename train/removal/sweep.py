"""Run a sweep point by point; every finished point is on disk, and an unfinished one keeps its last whole batch of
samples and chunk of features (:mod:`train.removal.unfinished`), so an interrupted sweep resumes where it stopped.

A point's files, in ``OUT/points/``: ``<name>.safetensors`` (the uint8 samples, their class labels, each feature
network's per-sample features and the paired bootstrap resamples of its KID / FID, DNG's posterior at the last
informative step) and ``<name>.json`` (settings, resume key, metrics with the real-vs-real floor, DNG's lambda(k)
table, posterior summary and curves, timing), the JSON written last and atomically: its presence with the same
key marks the point done. The np-schedule ablation runs after every other point (it reads DNG's table). Under
``accelerate launch`` the pending points are dealt out round-robin over the processes (sample i's noise does not
depend on the process, see :mod:`train.removal.noise`), and the main process merges ``points.json`` /
``points.csv`` when all are done.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from train.atomic import write_atomically
from train.hardware import cpu_name
from train.removal import metrics as M
from train.removal.evaluation import Evaluator
from train.removal.models import StudyModels
from train.removal.noise import CommonNoise
from train.removal.points import (
    Point,
    guidance_spec,
    np_spec,
    point_samples,
    point_settings,
    sampler_settings,
    schedule_source,
    settings_key,
    sweep_points,
)
from train.removal.presets import RemovalPreset
from train.removal.records import (
    PosteriorRecords,
    curves,
    label_summary,
    lambda_table,
    last_posterior,
    schedule_lambdas,
)
from train.removal.sampler import BranchNetworks, sample_batch
from train.removal.unfinished import UnfinishedPoint

QUALITY_COLUMNS = tuple(f"{kind}_{net}_{selection}" for net in ("inception", "classifier")
                        for kind, selection in (("kid", "kept"), ("fid", "balanced"), ("kid", "balanced")))
FLOOR_COLUMNS = ("floor_samples",) + tuple(f"{kind}_{net}_{selection}_floor" for net in ("inception", "classifier")
                                           for kind, selection in (("fid", "kept"), ("fid", "all"), ("kid", "kept"),
                                                                   ("fid", "balanced"), ("kid", "balanced")))
# the first report's columns, in their order; what issue 18 added comes after them
CSV_COLUMNS = ("method", "scale", "p_max", "sampler", "steps", "samples", "forbidden_share", "kl_uniform_kept",
               "kl_data_kept", "fid_inception_kept", "fid_inception_all", "fid_classifier_kept", "fid_classifier_all",
               "class_histogram", "mean_final_posterior", "rows_per_sample_step", "diverged_samples", "seconds",
               "samples_per_second", "device", "seed", "sampler_variance", "dng_tracker", "dng_transition_variance",
               "dng_prior", "dng_temperature", "dng_offset", "sld_threshold", "sld_s_s", "sld_beta_m", "sld_s_m",
               "model_unconditional", "model_forget", "model_oracle", "key", *QUALITY_COLUMNS, *FLOOR_COLUMNS,
               "schedule_source")


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


@dataclass
class SampledPoint:
    """A point's samples (uint8), network rows per sample and step (1 unguided, 2 for NP / SLD / DNG on DDPM and
    np-schedule, more where the flow tracker probes), how many samples overflowed to inf/NaN, and for DNG the
    per-sample records."""

    images: torch.Tensor
    rows_per_sample_step: float
    diverged: int
    records: PosteriorRecords | None = None


def point_spec(point: Point, preset: RemovalPreset, out: Path, models: StudyModels, steps: int):
    """The core spec(s) of a point: for np-schedule one NP spec per step from its finished DNG point's table."""
    if point.method != "np-schedule":
        return guidance_spec(point, preset)
    source = schedule_source(point)
    expected = settings_key(point_settings(source, preset, _models_of(source, models)))
    found = done_points(out).get(source.name)
    if found is None or found.get("key") != expected:
        raise RuntimeError(f"{point.name} follows {source.name}, which is not finished with the current settings: "
                           "run the DNG points first (the sweep does)")
    prior = preset.dng_prior
    lambdas = schedule_lambdas(found["lambda_schedule"], steps, initial=point.scale * prior / (1 - prior))
    return [np_spec(lam) for lam in lambdas]


def sample_point(point: Point, preset: RemovalPreset, models: StudyModels, device: torch.device,
                 autocast_dtype: torch.dtype | None, spec=None, first: int = 0,
                 unfinished: UnfinishedPoint | None = None) -> SampledPoint:
    """The point's samples from index ``first`` on (0: all of them). ``spec``: the point's core spec(s) (default:
    :func:`guidance_spec`; np-schedule points need :func:`point_spec`). DNG records every sample's p and lambda at
    every step. ``unfinished``: the point's saved progress (from ``first``): sampling goes on after its last batch
    and saves it as it goes."""
    spec = guidance_spec(point, preset) if spec is None else spec
    sampler = sampler_settings(point, preset)
    samples = point_samples(point, preset)
    unfinished = UnfinishedPoint(None, "", first) if unfinished is None else unfinished
    if unfinished.start != first:
        raise ValueError(f"the unfinished point starts at sample {unfinished.start}, not {first}")
    positive = models.oracle if point.method == "oracle" else models.unconditional
    networks = BranchNetworks(positive, models.forget, autocast_dtype)
    noise = CommonNoise(preset.seed, models.image_shape, device)
    record = "per_image" if point.method == "dng" else "none"
    resumed = unfinished.next_index
    progress = tqdm(total=samples, initial=resumed, desc=point.name, unit="sample", leave=False, disable=None)
    began = time.perf_counter()
    for start in range(resumed, samples, preset.batch_size):
        batch_began = time.perf_counter()
        indices = range(start, min(samples, start + preset.batch_size))
        x, run, batch_rows = sample_batch(networks, models.schedule, spec, sampler, indices, noise, record=record)
        finite = torch.isfinite(x).flatten(1).all(1)
        # an extreme scale can overflow a sample: it is kept as the saturated image it is, and counted
        images = M.to_uint8(torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)).cpu()  # (waits for the device)
        records = PosteriorRecords.from_batches([[r for r in run.records if "p" in r]]) if record == "per_image" \
            else None  # the run's own per-step record: DNG's p and lambda of every sample
        unfinished.add_batch(images, batch_rows, int((~finite).sum()), records, time.perf_counter() - batch_began)
        progress.update(len(indices))
        if progress.disable:  # no terminal (a nohup log): a line per batch instead of the bar
            done, seconds = indices.stop - resumed, time.perf_counter() - began
            print(f"  {point.name}: {indices.stop}/{samples} samples, {done / seconds:.1f}/s, about "
                  f"{(samples - indices.stop) * seconds / done / 60:.0f} min of sampling left", file=sys.stderr,
                  flush=True)
    progress.close()
    if unfinished.next_index > resumed:
        unfinished.save(force=True)  # the features start from every sample
    return SampledPoint(unfinished.all_images(), unfinished.rows / ((samples - first) * sampler.steps),
                        unfinished.diverged, unfinished.all_records())


@dataclass
class GrowthSource:
    """A finished point a larger one grows from: its result (JSON) and tensors (safetensors)."""

    result: dict
    tensors: dict[str, torch.Tensor]

    @property
    def samples(self) -> int:
        return self.result["samples"]

    def records(self) -> PosteriorRecords | None:
        return PosteriorRecords.from_tensors(self.tensors)

    def joined(self, new: SampledPoint) -> SampledPoint:
        """This point's samples followed by ``new`` (the indices after them)."""
        total = self.samples + len(new.images)
        rows = (self.result["rows_per_sample_step"] * self.samples + new.rows_per_sample_step * len(new.images))
        records = None if new.records is None else PosteriorRecords.joined([self.records(), new.records])
        return SampledPoint(torch.cat([self.tensors["images"], new.images]), rows / total,
                            self.result["diverged_samples"] + new.diverged, records)


def growth_source(point: Point, settings: dict, out: Path, batch_size: int) -> GrowthSource | None:
    """The finished point ``point`` can grow from: on disk under its name with every setting but the sample count
    the same, fewer samples, whole batches (sample i then sits in the batch a fresh run puts it in) and, for
    DNG, its per-sample records (points written before they were kept start over)."""
    path = out / "points" / f"{point.name}.json"
    try:
        result = json.loads(path.read_text())
        old = result["settings"]
    except (OSError, ValueError, KeyError):
        return None
    wanted = json.loads(json.dumps(settings))  # as the finished point's settings read back from its JSON
    samples = old.get("samples", 0)
    same_otherwise = (old | {"samples": wanted["samples"]}) == wanted
    if not (same_otherwise and 0 < samples < wanted["samples"] and samples % batch_size == 0
            and result.get("samples") == samples):
        return None
    source = GrowthSource(result, load_point_tensors(out, point.name))
    if point.method == "dng" and "dng_p" not in source.tensors:
        return None
    return source


def posterior_results(records: PosteriorRecords | None, labels: np.ndarray, preset: RemovalPreset) -> dict:
    """What a DNG point reports from its records: the mean posterior at the last informative step, the
    lambda(k) table np-schedule follows, the per-label summary and the curve samples."""
    if records is None:
        return {"mean_final_posterior": None, "curves": None}
    return {"mean_final_posterior": float(last_posterior(records).mean()),
            "lambda_schedule": lambda_table(records),
            "posterior_by_label": label_summary(records, labels, preset.removed),
            "curves": curves(records, labels, preset.removed, preset.curve_samples) if preset.curve_samples else None}


def run_point(point: Point, preset: RemovalPreset, models: StudyModels, evaluator: Evaluator, out: Path,
              device: torch.device, autocast_dtype: torch.dtype | None) -> dict:
    settings = point_settings(point, preset, _models_of(point, models))
    key = settings_key(settings)
    sampler = sampler_settings(point, preset)
    spec = point_spec(point, preset, out, models, sampler.steps)
    source = growth_source(point, settings, out, preset.batch_size)
    first = source.samples if source else 0
    folder = out / "points"
    unfinished = UnfinishedPoint.open(folder, point.name, key, first)
    sampled = sample_point(point, preset, models, device, autocast_dtype, spec, first, unfinished)
    seconds = unfinished.seconds
    known_features = {}
    if source:
        sampled = source.joined(sampled)
        seconds += source.result["seconds"]
        known_features = {k: v for k, v in source.tensors.items() if k.startswith("features_")}
    known_features |= unfinished.features  # a resumed point's, these images' first ones (the reused ones too)
    labels = evaluator.labels(sampled.images)
    samples = len(sampled.images)
    measured, tensors = evaluator.metrics(sampled.images, labels, known_features, saved=unfinished.set_features)
    result = {"name": point.name, "key": key, **asdict(point), "samples": samples,
              **measured, **posterior_results(sampled.records, labels.numpy(), preset),
              "rows_per_sample_step": round(sampled.rows_per_sample_step, 4), "diverged_samples": sampled.diverged,
              "seconds": round(seconds, 2),
              "samples_per_second": round(samples / seconds, 3), "device": _device_name(device),
              "torch": torch.__version__, "settings": settings}
    if first:
        result["grown_from"] = first  # samples reused from the point's earlier, smaller run
    if point.method == "np-schedule":
        result["applied_lambda"] = [one.cfg_scale - 1.0 for one in spec]  # per step, every sample
    tensors |= {"images": sampled.images.contiguous(), "labels": labels.contiguous()}
    if sampled.records is not None:
        tensors |= {"posterior_last_step": torch.from_numpy(last_posterior(sampled.records)),
                    **sampled.records.tensors()}
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    write_atomically(folder / f"{point.name}.safetensors", lambda p: save_file(tensors, str(p)))
    write_atomically(folder / f"{point.name}.json", lambda p: p.write_text(json.dumps(result, indent=1)))
    unfinished.remove()
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
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def pending_points(preset: RemovalPreset, models: StudyModels, out: Path) -> tuple[list[Point], dict[str, dict]]:
    """The sweep's points not yet on disk with their current key, and the finished ones."""
    finished = done_points(out)
    todo, kept = [], {}
    for point in sweep_points(preset, models.oracle is not None):
        key = settings_key(point_settings(point, preset, _models_of(point, models)))  # np-schedule: its source's too
        if finished.get(point.name, {}).get("key") == key:
            kept[point.name] = finished[point.name]
        else:
            todo.append(point)
    return todo, kept


def run_sweep(preset: RemovalPreset, models: StudyModels, evaluator: Evaluator, out: Path, device: torch.device,
              autocast_dtype: torch.dtype | None, rank: int = 0, world: int = 1, progress=print,
              wait=lambda: None) -> list[Point]:
    """Run this process's share of the pending points; returns the points it ran. Two phases: every point but
    the np-schedule ablation, then (after ``wait``: all processes) the ablation, which reads finished DNG points."""
    todo, kept = pending_points(preset, models, out)
    if rank == 0:
        progress(f"{len(kept)} of {len(kept) + len(todo)} points already in {out / 'points'}; "
                 f"{len(todo)} to run over {world} process(es)")
    evaluator.prepare_floors(sorted({point_samples(p, preset) for p in todo}), rank, world, wait)
    ran = []
    for phase in (False, True):
        mine = [p for p in todo if (p.method == "np-schedule") == phase][rank::world]
        for n, point in enumerate(mine, 1):
            result = run_point(point, preset, models, evaluator, out, device, autocast_dtype)
            grown = f", grown from {result['grown_from']}" if "grown_from" in result else ""
            progress(f"[{rank}] {n}/{len(mine)} {point.name}: forbidden {result['forbidden_share']:.3f}, "
                     f"KL {result['kl_uniform_kept']:.3f}, {result['samples_per_second']:.1f} samples/s{grown}")
        ran += mine
        if not phase:
            wait()
    return ran


def merge_points(preset: RemovalPreset, models: StudyModels, out: Path, report: Path) -> list[dict]:
    """``report``/points.json (every point, full) and points.csv (one row per point, the CSV_COLUMNS) of the
    sweep in ``out``."""
    todo, kept = pending_points(preset, models, out)
    if todo:
        raise RuntimeError(f"{len(todo)} points are not finished: {', '.join(p.name for p in todo[:5])}")
    order = [p.name for p in sweep_points(preset, models.oracle is not None)]
    rows = [kept[name] for name in order]
    report.mkdir(parents=True, exist_ok=True)
    write_atomically(report / "points.json", lambda p: p.write_text(json.dumps(rows, indent=1)))

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(csv_row(row) for row in rows)

    write_atomically(report / "points.csv", write_csv)
    return rows


def csv_row(result: dict) -> dict:
    """A point's flat CSV row: its metrics and every setting behind it (the switches, seed, model hashes)."""
    settings = result["settings"]
    row = dict(result, class_histogram=" ".join(map(str, result["class_histogram"])), seed=settings["seed"],
               sampler_variance=settings["sampler_variance"])
    row |= {f"dng_{k}": v for k, v in settings.get("dng", {}).items() if k != "p_max"}
    row |= {f"sld_{k}": v for k, v in settings.get("sld", {}).items()}
    row |= {f"model_{role}": digest[:16] for role, digest in settings["models"].items()}
    floor = result.get("floor") or {}
    row |= {f"{key}_floor": value for key, value in floor.items() if key != "n"}
    row["floor_samples"] = floor.get("n")
    row["schedule_source"] = settings.get("schedule_source", {}).get("name")
    return row


def load_point_tensors(out: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(out / "points" / f"{name}.safetensors"))
