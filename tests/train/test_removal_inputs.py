"""Class-removal inputs refused before any work, with one line each (issue 22): image shapes that do not agree,
an empty method list, a data folder that is a file; and the `tiny` preset's names."""

from pathlib import Path

import pytest
from removal_fixtures import study_dirs

from train.cli import main
from train.removal.presets import REMOVAL_PRESETS, removal_preset


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return study_dirs(tmp_path_factory.mktemp("inputs"))


def _argv(dirs, out, *extra, dataset="mnist"):
    return ["removal", "--dataset", dataset, "--remove", "0", "--uncond", str(dirs["uncond"]), "--forget",
            str(dirs["forget"]), "--classifier", str(dirs["classifier"]), "--out", str(out), "--cpu", *extra]


def test_mnist_models_on_cifar10_are_refused_before_the_sweep(dirs, tmp_path, capsys, cifar_dir):
    assert main(_argv(dirs, tmp_path / "out", "--data-dir", str(cifar_dir), dataset="cifar10")) == 2
    err = capsys.readouterr().err
    assert "image shapes differ" in err and "(1, 28, 28)" in err and "(3, 32, 32)" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "points").exists()


def test_an_empty_method_list_is_refused(dirs, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(_argv(dirs, tmp_path / "out", "--methods", ""))
    assert stop.value.code == 2 and "name at least one of np" in capsys.readouterr().err


def test_a_data_dir_that_is_a_file_says_so(dirs, tmp_path, capsys):
    file = tmp_path / "mnist.tar"
    file.write_text("not a folder")
    assert main(_argv(dirs, tmp_path / "out", "--data-dir", str(file))) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_the_tiny_preset_by_its_short_name():
    assert removal_preset("tiny", "mnist", "cpu") == REMOVAL_PRESETS["mnist-tiny"]
    tiny = REMOVAL_PRESETS["mnist-tiny"]
    assert tiny.fid_networks == ("classifier",) and tiny.samples <= 128 and tiny.decisive_samples is None


@pytest.mark.parametrize("extra, folder", [(["--preset", "tiny"], "removal-mnist-0-tiny"),
                                           (["--training", "cpu"], "removal-mnist-0")])
def test_tiny_models_default_to_their_own_folder(tmp_path, monkeypatch, extra, folder):
    """A later full-size run must not resume from the tiny study's models."""
    import train.removal.reproduce as reproduce

    seen = []

    def stop(dataset, remove, runs, *args):
        seen.append(runs)
        raise SystemExit(0)

    monkeypatch.setattr(reproduce, "train_models", stop)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["reproduce-removal", "--dataset", "mnist", "--remove", "0", "--cpu", *extra])
    assert seen == [Path("runs") / folder]
