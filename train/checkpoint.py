"""Atomic, pickle-free training checkpoints.

A checkpoint is a folder `checkpoint-<step>/` with
* `model.safetensors`: the network weights;
* `state.safetensors`: every other tensor of the training state (optimizer moments, EMA shadow weights, RNG
  states), with the nested structure they came from (optimizer.state_dict(), ...) stored as JSON in the file's
  metadata, tensors replaced by their key: `torch.load` and pickle are never involved;
* `checkpoint.json`: step, the run configuration, and the SHA-256 of both files, checked before resuming.

It is written into `checkpoint-<step>.tmp/`, flushed, then renamed in one `os.replace`: a process killed while
writing leaves only a `.tmp` folder, which is ignored and cleaned up by the next save.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from train.errors import UsageError
from train.paths import make_output_folder

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INTKEYS = "__intkeys__"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def flatten_state(state: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat {key: tensor} dict for safetensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            tensors[path] = obj.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(obj, dict):
            # JSON keys are strings: remember which ones were ints (optimizer state is keyed by param index).
            out = {str(k): walk(v, f"{path}.{k}") for k, v in obj.items()}
            intkeys = [str(k) for k in obj if isinstance(k, int)]
            if intkeys:
                out[_INTKEYS] = intkeys
            return out
        if isinstance(obj, tuple):
            return {_TUPLE: [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store {type(obj).__name__} at {path} without pickle")

    return walk(state, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    def walk(obj: Any) -> Any:
        if isinstance(obj, dict):
            if _TENSOR in obj:
                return tensors[obj[_TENSOR]]
            if _TUPLE in obj:
                return tuple(walk(v) for v in obj[_TUPLE])
            intkeys = set(obj.get(_INTKEYS, []))
            return {(int(k) if k in intkeys else k): walk(v) for k, v in obj.items() if k != _INTKEYS}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(skeleton)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    training_state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint-<step>/ atomically and keep only the newest `keep` checkpoints."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob("checkpoint-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f"checkpoint-{step}.tmp"
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, tmp / "model.safetensors")
    skeleton, tensors = flatten_state(training_state)
    save_file(tensors, tmp / "state.safetensors", metadata={"skeleton": json.dumps(skeleton)})
    meta = {
        "step": step,
        "config": config,
        "sha256": {name: sha256_file(tmp / name) for name in ("model.safetensors", "state.safetensors")},
    }
    (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    for name in ("model.safetensors", "state.safetensors", "checkpoint.json"):
        _fsync(tmp / name)
    if final.exists():  # a re-run of the same step: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in Path(run_dir).iterdir() if p.is_dir() and _CKPT.match(p.name)] if run_dir.is_dir() else []
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))


def find_checkpoint(path: Path) -> Path:
    """`path` is a checkpoint folder, or a run folder whose newest complete checkpoint is taken."""
    path = Path(path)
    if (path / "checkpoint.json").is_file():
        return path
    if not path.is_dir():
        raise UsageError(f"--resume {path}: no such checkpoint or run directory")
    found = list_checkpoints(path)
    if not found:
        raise UsageError(f"--resume {path}: no checkpoint-<step>/ folder in it (nothing to resume)")
    return found[-1]


def resolve_run(resume: str | Path | None, output_dir: str | Path | None, default: Path) -> tuple[Path | None, Path]:
    """(checkpoint to resume or None, run folder, created now). A resumed run stays in its folder unless told
    otherwise; a new run refuses a folder that already holds checkpoints rather than mixing two runs in it."""
    ckpt = find_checkpoint(Path(resume)) if resume is not None else None
    run_dir = Path(output_dir or (ckpt.parent if ckpt else default))
    make_output_folder(run_dir, "--output-dir" if output_dir else "run folder")
    if ckpt is None and list_checkpoints(run_dir):
        raise UsageError(
            f"{run_dir} already holds checkpoints: pass --resume {run_dir} to continue, or choose another --output-dir"
        )
    return ckpt, run_dir


def remove_checkpoints(run_dir: Path) -> None:
    for ckpt in list_checkpoints(run_dir):
        shutil.rmtree(ckpt, ignore_errors=True)


def load_checkpoint(
    ckpt: Path, config: dict[str, Any], must_match: tuple[str, ...]
) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]]:
    """Verify hashes and that `config[must_match]` equals what the checkpoint was trained with, then load."""
    meta = _read_meta(ckpt)
    step, saved_config, hashes = meta["step"], meta["config"], meta["sha256"]
    for name, digest in hashes.items():
        if not (ckpt / name).is_file():
            raise UsageError(f"checkpoint {ckpt} is incomplete: {name} is missing")
        if sha256_file(ckpt / name) != digest:
            raise UsageError(f"checkpoint {ckpt} is corrupt: {name} does not match its recorded SHA-256")
    diffs = [
        f"{key}: checkpoint has {saved_config.get(key)!r}, this run has {config.get(key)!r}"
        for key in must_match
        if _jsonable(saved_config.get(key)) != _jsonable(config.get(key))
    ]
    saved_preset, this_preset = saved_config.get("name"), config.get("name")
    if diffs and saved_preset != this_preset:  # one sentence instead of the presets' differences key by key
        raise UsageError(
            f"checkpoint {ckpt} was trained with preset {saved_preset}, this run uses {this_preset}: "
            f"add --preset {saved_preset} (or leave --preset out to use the checkpoint's)"
        )
    if diffs:
        raise UsageError(f"checkpoint {ckpt} does not match this run:\n  " + "\n  ".join(diffs))
    try:
        model_state = load_file(ckpt / "model.safetensors")
        tensors = load_file(ckpt / "state.safetensors")
        from safetensors import safe_open

        with safe_open(ckpt / "state.safetensors", "pt") as f:
            skeleton = json.loads(f.metadata()["skeleton"])
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise UsageError(f"checkpoint {ckpt} is corrupt: {err}") from err
    return step, model_state, unflatten_state(skeleton, tensors)


def _read_meta(ckpt: Path) -> dict[str, Any]:
    """checkpoint.json: step, config and the files' SHA-256."""
    try:
        meta = json.loads((ckpt / "checkpoint.json").read_text())
        return {"step": int(meta["step"]), "config": dict(meta["config"]), "sha256": dict(meta["sha256"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"checkpoint {ckpt} is corrupt: checkpoint.json unreadable ({err})") from err


def checkpoint_config(ckpt: Path) -> dict[str, Any]:
    """The run configuration a checkpoint was trained with (its preset's fields and the data selection)."""
    return _read_meta(ckpt)["config"]


def _jsonable(value: Any) -> Any:
    """Compare configs the way they are stored (tuples become lists in JSON)."""
    return json.loads(json.dumps(value))
