"""A study cell: one method on one set of cases, every image from the common random numbers, saved once.

``cells/<name>.safetensors`` holds the uint8 images (and the per-step traces the cell asked for),
``cells/<name>.json`` its settings, key and timing; the JSON is written last, so an interrupted study redoes only
the cell it was in. Traces: ``x0`` (the detector's presence of each case's target object, and its texture, in
the decoded x0 estimate of every step), ``attention`` (Ban et al.'s r_t of the negative's words against the
same words in the prompt, per step) and ``signal`` (per image and step the adaptive window's start signal, or in a
``dng`` cell DNG's tracked posterior p; NaN where the step measured none).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from train.atomic import write_atomically
from train.t2i.scenes import OBJECTS, TEXTURES, from_unit
from train.t2i.study.cases import Case, image_seed


@dataclass(frozen=True)
class Method:
    """A row of the study: NegGuidePipeline keyword arguments (``mode`` and its options) and whether the case's
    negative prompt is passed (DNS and the no-negative baseline pass none)."""

    name: str
    kwargs: dict = field(default_factory=dict)
    negative: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Cell:
    name: str
    images: torch.Tensor  # uint8 [cases * seeds, 3, 32, 32]
    traces: dict[str, torch.Tensor]
    info: dict


def cell_key(method: Method, cases: list[Case], seeds: list[int], steps: int, cfg: float, model: str,
             traces: tuple[str, ...]) -> str:
    payload = {"method": method.as_dict(), "cases": [asdict(c) for c in cases], "seeds": seeds, "steps": steps,
               "cfg": cfg, "model": model, "traces": list(traces)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_cell(folder: Path, name: str, key: str) -> Cell | None:
    meta = folder / f"{name}.json"
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text())
        if info.get("key") != key:
            return None
        tensors = load_file(folder / f"{name}.safetensors")
    except (OSError, ValueError):
        return None
    return Cell(name, tensors.pop("images"), tensors, info)


def _target_index(case: Case) -> int:
    return OBJECTS.index((case.target.shape, case.target.colour)) if case.target and case.target.named else -1


def run_cell(study, name: str, method: Method, cases: list[Case], seeds: int, traces: tuple[str, ...] = (),
             image_seeds: list[int] | None = None) -> Cell:
    """The cell from disk when its key matches, else generated (in batches of ``study.batch_size``) and saved.
    Image j of case i (row i * seeds + j) starts from ``image_seed(i, j)``, or from ``image_seeds[row]``."""
    pairs = [(i, j) for i in range(len(cases)) for j in range(seeds)]
    all_seeds = image_seeds if image_seeds is not None else [image_seed(i, j) for i, j in pairs]
    if len(all_seeds) != len(pairs):
        raise ValueError(f"{len(all_seeds)} image seeds for {len(pairs)} images")
    key = cell_key(method, cases, all_seeds, study.steps, study.cfg, study.model_id, traces)
    found = load_cell(study.cells, name, key)
    if found is not None:
        study.progress(len(pairs), reused=True)
        return found
    started = time.perf_counter()
    images, trace_parts = [], {t: [] for t in traces}
    for start in range(0, len(pairs), study.batch_size):
        chunk = pairs[start:start + study.batch_size]
        batch_cases = [cases[i] for i, _ in chunk]
        out, steps_trace = _generate(study, method, batch_cases, all_seeds[start:start + len(chunk)], traces)
        images.append(out)
        for t in traces:
            trace_parts[t].append(steps_trace[t])
        study.progress(len(chunk))
    tensors = {"images": torch.cat(images).contiguous()}
    tensors |= {t: torch.cat(trace_parts[t]).contiguous() for t in traces}
    info = {"name": name, "key": key, "method": method.as_dict(), "cases": len(cases), "seeds": seeds,
            "seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads()}
    study.cells.mkdir(parents=True, exist_ok=True)
    write_atomically(study.cells / f"{name}.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_atomically(study.cells / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(info, indent=1)))
    return Cell(name, tensors.pop("images"), tensors, info)


@torch.no_grad()
def _generate(study, method: Method, cases: list[Case], seeds: list[int], traces: tuple[str, ...]):
    pipe, detector = study.pipe, study.detector
    targets = torch.tensor([_target_index(c) for c in cases])
    textures = torch.tensor([TEXTURES.index(c.target.texture) if c.target and c.target.texture else -1
                             for c in cases])
    x0_trace: list[torch.Tensor] = []

    def on_step(_pipe, k, t, tensors):
        if "x0" in traces:
            vae = pipe.pipe.vae
            decoded = vae.decode(tensors["denoised"] / vae.config.scaling_factor).sample.clamp(-1, 1).float()
            probs = detector.probabilities(decoded)
            rows = torch.arange(len(cases))
            presence = probs["presence"][rows, targets.clamp(min=0)]
            texture = probs["texture"][rows, targets.clamp(min=0), textures.clamp(min=0)]
            red = probs["presence"][:, [i for i, (_, c) in enumerate(OBJECTS) if c == "red"]].amax(1)
            x0_trace.append(torch.stack([torch.where(targets >= 0, presence, red),
                                         torch.where(textures >= 0, texture, torch.nan)], dim=1))
        return None

    negatives = [c.negative or "" for c in cases] if method.negative else None
    out = pipe([c.prompt for c in cases], negatives, guidance_scale=study.cfg, num_inference_steps=study.steps,
               generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pt",
               callback_on_step_end=on_step if "x0" in traces else None,
               capture_attention="attention" in traces, **method.kwargs)
    result = {}
    if "x0" in traces:
        result["x0"] = torch.stack(x0_trace, dim=1)  # [B, steps, 2]: target presence, target texture
    if "attention" in traces:
        result["attention"] = torch.stack([_strength(out.attention, c, b) for b, c in enumerate(cases)])
    if "signal" in traces:
        key = "p" if method.kwargs.get("mode") == "dng" else "signal"
        result["signal"] = _signals(out.records, len(cases), study.steps, key)
    return from_unit(out.images * 2 - 1), result


def _signals(records: list[dict], batch: int, steps: int, key: str) -> torch.Tensor:
    """[B, steps] float32: the records' per-image ``key`` at each step (NaN where the step recorded none)."""
    out = torch.full((batch, steps), float("nan"))
    for record in records:
        if key in record:
            out[:, record["step"]] = torch.tensor(record[key], dtype=torch.float32)
    return out


def _strength(record, case: Case, image: int) -> torch.Tensor:
    """r_t of the negative's words against the prompt's matching words: the whole object ("blue square": both
    words, Ban's noun case) or the texture word against its object's shape word (the adjective case)."""
    if case.kind == "attribute":
        negative, positive = case.negative, case.target.shape
    else:
        negative = positive = case.negative
    words = negative.split()
    if len(words) == 1:
        return record.strength(negative, positive, image).float()
    per_word = [record.strength(w, w, image) for w in words]
    return torch.stack(per_word).mean(0).float()

