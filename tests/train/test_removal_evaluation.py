"""The evaluator's references and floor on real MNIST (tiny classifier features): the feature cache, the
real-vs-real floor sits far below what noise images score, a point's metrics and resamples."""

import dataclasses

import numpy as np
import pytest
import torch
from removal_fixtures import tiny_classifier_dir

from train.classifier_io import load_classifier
from train.removal.evaluation import Evaluator, FloorSource, build_network_reference, fill_feature_cache
from train.removal.fid import ClassifierFeatures, selection_features
from train.removal.paired import RESAMPLES


class CountingNetwork:
    """Mean pixel per row of the image: a cheap 28-d feature network that counts the images it sees."""

    network_id = "row-means"

    def __init__(self):
        self.seen = 0

    def __call__(self, images):
        self.seen += len(images)
        return images.double().mean(dim=(1, 3))


def test_selection_features_are_cached_and_recomputed_when_corrupt(mnist_dir, tmp_path):
    net = CountingNetwork()
    first = selection_features("mnist", 0, net, tmp_path, mnist_dir, split="test", limit=30)
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("features-") and net.seen == 30 and (first.labels != 0).all()
    again = selection_features("mnist", 0, net, tmp_path, mnist_dir, split="test", limit=30)
    assert net.seen == 30 and torch.equal(again.features, first.features)
    cached.write_bytes(cached.read_bytes()[:50])
    with pytest.warns(UserWarning, match="recomputing"):
        selection_features("mnist", 0, net, tmp_path, mnist_dir, split="test", limit=30)
    assert net.seen == 60


@pytest.fixture
def evaluator(tmp_path, mnist_dir):
    root = tmp_path
    folder = tiny_classifier_dir(root / "classifier")
    device = torch.device("cpu")
    reference = build_network_reference(ClassifierFeatures(folder, device), "mnist", 0, root / "cache", mnist_dir,
                                        300, 10, device)
    classifier = load_classifier(folder, device)
    histogram = torch.ones(10, dtype=torch.int64)
    return Evaluator(classifier, 10, 0, {"classifier": reference}, histogram, device,
                     FloorSource("mnist", mnist_dir, root / "cache"), fid_resamples=20)


def test_real_images_score_at_the_floor_and_noise_far_above_it(evaluator, mnist_dir):
    from train.data import load_dataset

    floor = evaluator.floor(64)
    assert floor["n"] == 64 and set(floor) >= {"fid_classifier_kept", "kid_classifier_kept", "fid_classifier_all",
                                               "fid_classifier_balanced", "kid_classifier_balanced"}
    noise = torch.randint(0, 256, (64, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    measured, tensors = evaluator.metrics(noise, evaluator.labels(noise))
    assert measured["fid_classifier_kept"] > 5 * floor["fid_classifier_kept"]
    assert measured["kid_classifier_kept"] > 5 * abs(floor["kid_classifier_kept"])
    assert measured["floor"] == floor  # computed once per sample count
    # real held-out images of the kept classes, measured as a point: at the floor's level, not the noise's
    real = load_dataset("mnist", "test", mnist_dir, drop_class=0, limit=500).images[-64:]
    as_point, _ = evaluator.metrics(real, evaluator.labels(real))
    assert as_point["fid_classifier_kept"] < 2 * floor["fid_classifier_kept"] + 1
    assert tensors["resample_kid_classifier_kept"].shape == (RESAMPLES,)
    assert tensors["resample_fid_classifier_kept"].shape == (20,)
    draws = tensors["resample_kid_classifier_kept"].numpy()
    assert np.quantile(draws, 0.025) < measured["kid_classifier_kept"] < np.quantile(draws, 0.975)


class Counted:
    """A feature network that counts the images it featurises."""

    def __init__(self, network):
        self.network, self.network_id, self.seen = network, network.network_id, 0

    def __call__(self, images):
        self.seen += len(images)
        return self.network(images)


def test_two_processes_share_out_the_floors_features_and_read_each_others_from_the_cache(evaluator, tmp_path):
    """Each process featurises its share of the floors' real images (kept classes on one, all classes on the
    other) and, after the barrier, reads the other's from the cache: every image featurised once, same floors."""
    cache = tmp_path / "cache"
    before = set(cache.iterdir())
    ranks = []
    for _ in range(2):
        ref = evaluator.references["classifier"]
        counted = dataclasses.replace(ref, network=Counted(ref.network))
        ranks.append(Evaluator(evaluator.classifier, 10, 0, {"classifier": counted}, evaluator.data_histogram,
                               evaluator.device, evaluator.floor_source, fid_resamples=20))
    # rank 0's barrier is where rank 1 runs its share; rank 1 passes its barrier once rank 0's files are there
    ranks[0].prepare_floors([32, 48], 0, 2, wait=lambda: ranks[1].prepare_floors([32, 48], 1, 2))
    seen = [rank.references["classifier"].network.seen for rank in ranks]
    assert seen == [32 + 48, 32 + 48]  # kept-class selections on rank 0, all-class ones on rank 1, each once
    assert len(set(cache.iterdir()) - before) == 4  # kept and all classes, at each count
    assert ranks[0].floor(48) == ranks[1].floor(48) == evaluator.floor(48)
    assert [rank.references["classifier"].network.seen for rank in ranks] == seen  # floors read from the cache


def test_fill_feature_cache_deals_the_selections_out_in_turn_and_waits_once():
    done, waits = [], []
    selections = [lambda i=i: done.append(i) for i in range(5)]
    fill_feature_cache(selections, rank=1, world=2, wait=lambda: waits.append(len(done)))
    assert done == [1, 3] and waits == [2]
    fill_feature_cache(selections, wait=lambda: waits.append(len(done)))
    assert done == [1, 3, 0, 1, 2, 3, 4] and waits == [2, 7]
