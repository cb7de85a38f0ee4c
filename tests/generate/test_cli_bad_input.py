"""Bad input that used to escape ``python -m negguide.generate`` (issue 22): each is one ``error:`` line, before any
model loads, and leaves no output folder behind."""

from __future__ import annotations

import pytest
from test_cli import base_args, model_dir, offline  # noqa: F401 (fixtures)

import negguide.generate.hub as hub
from negguide.generate import NegGuidePipeline
from negguide.generate.cli import main


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr(NegGuidePipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_corrupt_model_index_is_one_line(tmp_path, offline, capsys, no_loading):  # noqa: F811
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", ')
    assert main(base_args(str(folder), tmp_path / "o")) == 2
    assert "model_index.json is not valid JSON" in one_error_line(capsys)
    (folder / "model_index.json").write_text("[1, 2]")
    assert main(base_args(str(folder), tmp_path / "o")) == 2
    assert "must hold a JSON object" in one_error_line(capsys)


def test_out_that_is_a_file_is_refused_before_loading(model_dir, tmp_path, offline, capsys, no_loading):  # noqa: F811
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"")
    assert main(base_args(model_dir, taken)) == 2
    assert f"--out {taken} is a file" in one_error_line(capsys)
    assert main(base_args(model_dir, taken / "sub")) == 2
    assert "is a file, so the folder cannot be created" in one_error_line(capsys)


def test_an_offline_hub_id_says_that_the_hub_is_out_of_reach(tmp_path, offline, capsys, no_loading):  # noqa: F811
    assert main(base_args("someone/some-model", tmp_path / "o")) == 2
    line = one_error_line(capsys)
    assert "HF_HUB_OFFLINE is set" in line and "local diffusers folder" in line
    assert "does not appear to have a file" not in line


class ConnectError(Exception):
    """Named like httpx's: what the hub client raises without network."""


def test_a_hub_id_without_network_says_so(tmp_path, capsys, monkeypatch, no_loading):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    import diffusers
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "load_config",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("x does not appear to have a file named "
                                                                       "model_index.json.")))
    monkeypatch.setattr(huggingface_hub, "model_info", no_network)
    assert main(base_args("someone/some-model", tmp_path / "o")) == 2
    line = one_error_line(capsys)
    assert "the Hugging Face hub cannot be reached (no network?" in line


def test_dnp_without_a_captioner_it_can_load_says_what_to_do(model_dir, tmp_path, offline, capsys,  # noqa: F811
                                                             no_loading):
    out = tmp_path / "o"
    assert main(base_args(model_dir, out, "--mode", "dnp", "--captioner", "someone/captioner")) == 2
    line = one_error_line(capsys)
    for needle in ("captions the DNS image with someone/captioner", "HF_HUB_OFFLINE", "--captioner PATH",
                   "--mode dns"):
        assert needle in line
    assert not out.exists()


def test_dnp_with_a_local_captioner_folder_passes_the_check(model_dir, tmp_path, offline, monkeypatch):  # noqa: F811
    from negguide.generate.cli import captioner_problem

    assert captioner_problem(str(tmp_path)) is None
    assert "not on this machine" in captioner_problem("someone/captioner")


def test_network_errors_are_told_apart_by_class():
    assert hub.is_network_error(ConnectError("x")) and hub.is_network_error(TimeoutError())
    assert not hub.is_network_error(ValueError("x"))
