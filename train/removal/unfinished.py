"""A point's work in progress, on disk beside its finished files (``points/<name>.unfinished.safetensors``), so that
a sweep stopped inside a point (a kill, a machine handed back) resumes from the point's last whole batch of samples
or chunk of features instead of from its start: at 2,048 samples a point is about half an hour of one CPU process.

Saved atomically when the sampling ends and, before that, after a batch of samples or a chunk of features once
SAVE_EVERY_SECONDS have passed since the last save (on a CPU that is every batch, minutes each; on a GPU a DNG point
at T = 1000 carries 160 MB of per-sample records, not worth rewriting every few seconds). Read back only when it was
written for the point's current key and the same first sample index (a grown point makes its samples after those it
reuses), else ignored and overwritten. Resuming is exact: batches and feature chunks are cut at the indices an
uninterrupted run cuts them at (and sample i's noise depends on i alone, :mod:`train.removal.noise`). The sweep
removes the file once the point's own files are written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from train.atomic import write_atomically
from train.removal.records import PosteriorRecords

SUFFIX = ".unfinished.safetensors"
SAVE_EVERY_SECONDS = 60.0


@dataclass
class UnfinishedPoint:
    """What a point's run has made so far: its samples from ``start`` on (uint8 batches), the network rows they
    cost, how many diverged, their DNG records, the sampling seconds, and ``features_<net>`` of the point's first
    images (a grown point's reused ones included). ``path`` None: kept in memory only."""

    path: Path | None
    key: str
    start: int
    images: list[torch.Tensor] = field(default_factory=list)
    records: list[PosteriorRecords] = field(default_factory=list)
    rows: int = 0
    diverged: int = 0
    seconds: float = 0.0
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    saved_at: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def open(cls, folder: Path | None, name: str, key: str, start: int) -> UnfinishedPoint:
        """The point's saved progress if it was written for ``key`` and ``start``, else an empty one that will be
        saved there (``folder`` None: never saved)."""
        if folder is None:
            return cls(None, key, start)
        path = folder / f"{name}{SUFFIX}"
        try:
            with safe_open(path, "pt") as f:
                meta = json.loads((f.metadata() or {})["progress"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, SafetensorError, KeyError, ValueError):
            return cls(path, key, start)
        if (meta.get("key"), meta.get("start")) != (key, start):
            return cls(path, key, start)
        records = PosteriorRecords.from_tensors(tensors)
        images = [tensors["images"]] if "images" in tensors else []
        features = {k: v for k, v in tensors.items() if k.startswith("features_")}
        return cls(path, key, start, images, [] if records is None else [records], meta["rows"], meta["diverged"],
                   meta["seconds"], features)

    @property
    def sampled(self) -> int:
        return sum(len(batch) for batch in self.images)

    @property
    def next_index(self) -> int:
        """The index of the next sample to make."""
        return self.start + self.sampled

    def add_batch(self, images: torch.Tensor, rows: int, diverged: int, records: PosteriorRecords | None,
                  seconds: float) -> None:
        self.images.append(images)
        self.rows += rows
        self.diverged += diverged
        self.seconds += seconds
        if records is not None:
            self.records.append(records)
        self.save()

    def set_features(self, features: dict[str, torch.Tensor]) -> None:
        self.features = dict(features)
        self.save()

    def all_images(self) -> torch.Tensor:
        return torch.cat(self.images)

    def all_records(self) -> PosteriorRecords | None:
        return PosteriorRecords.joined(self.records) if self.records else None

    def save(self, force: bool = False) -> None:
        """Write the progress (only ``force``d or SAVE_EVERY_SECONDS after the last write)."""
        if self.path is None or not (force or time.monotonic() - self.saved_at >= SAVE_EVERY_SECONDS):
            return
        tensors = {"images": self.all_images()} if self.images else {}
        records = self.all_records()
        tensors |= ({} if records is None else records.tensors()) | self.features
        meta = {"key": self.key, "start": self.start, "rows": self.rows, "diverged": self.diverged,
                "seconds": self.seconds}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                                                          metadata={"progress": json.dumps(meta)}))
        self.saved_at = time.monotonic()

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
