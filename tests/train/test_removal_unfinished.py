"""A point's saved progress: read back whole when it belongs to the point's current key and start, ignored when
it does not (other settings, another first sample) or cannot be read."""

import numpy as np
import torch

from train.removal import unfinished
from train.removal.records import PosteriorRecords
from train.removal.unfinished import UnfinishedPoint


def _records(samples, offset):
    p = np.arange(2 * samples, dtype=np.float64).reshape(2, samples) / 100 + offset
    return PosteriorRecords([0, 1], [2.0, 1.0], p, 2 * p)


def test_progress_is_read_back_only_for_the_same_key_and_start(tmp_path, monkeypatch):
    monkeypatch.setattr(unfinished, "SAVE_EVERY_SECONDS", 0.0)  # every batch
    point = UnfinishedPoint.open(tmp_path, "dng", key="k1", start=8)
    assert point.next_index == 8 and point.all_records() is None
    point.add_batch(torch.full((4, 1, 2, 2), 7, dtype=torch.uint8), rows=96, diverged=1, records=_records(4, 0),
                    seconds=1.5)
    point.add_batch(torch.full((3, 1, 2, 2), 9, dtype=torch.uint8), rows=72, diverged=0, records=_records(3, 1),
                    seconds=0.5)
    point.set_features({"features_classifier": torch.ones(10, 5)})

    again = UnfinishedPoint.open(tmp_path, "dng", key="k1", start=8)
    assert (again.next_index, again.rows, again.diverged, again.seconds) == (15, 168, 1, 2.0)
    assert torch.equal(again.all_images(), point.all_images())
    assert np.array_equal(again.all_records().p, np.concatenate([_records(4, 0).p, _records(3, 1).p], axis=1))
    assert np.array_equal(again.all_records().lam, point.all_records().lam)
    assert again.all_records().step == [0, 1] and torch.equal(again.features["features_classifier"], torch.ones(10, 5))

    for key, start in (("k2", 8), ("k1", 0)):  # other settings, or a point now grown from another count
        stale = UnfinishedPoint.open(tmp_path, "dng", key=key, start=start)
        assert stale.next_index == start and not stale.images and not stale.features
    again.remove()
    assert not list(tmp_path.iterdir())


def test_an_unreadable_file_starts_the_point_over(tmp_path):
    (tmp_path / "np-1.unfinished.safetensors").write_bytes(b"\x00" * 20)
    point = UnfinishedPoint.open(tmp_path, "np-1", key="k", start=0)
    assert point.next_index == 0 and not point.images


def test_without_a_folder_nothing_is_written(tmp_path):
    point = UnfinishedPoint.open(None, "np-1", key="k", start=0)
    point.add_batch(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), rows=4, diverged=0, records=None, seconds=0.1)
    assert point.sampled == 2 and point.path is None and not list(tmp_path.iterdir())


def test_saves_wait_for_their_interval_unless_forced(tmp_path, monkeypatch):
    monkeypatch.setattr(unfinished, "SAVE_EVERY_SECONDS", 3600.0)
    point = UnfinishedPoint.open(tmp_path, "np-1", key="k", start=0)
    point.add_batch(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), rows=4, diverged=0, records=None, seconds=0.1)
    point.set_features({"features_classifier": torch.ones(2, 5)})
    assert not list(tmp_path.iterdir())
    point.save(force=True)
    assert UnfinishedPoint.open(tmp_path, "np-1", key="k", start=0).next_index == 2
