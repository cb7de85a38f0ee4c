"""Pickle-free checkpoints: round trip, atomicity, corruption and mismatch detection."""

import json

import pytest
import torch

from train.checkpoint import (
    find_checkpoint,
    flatten_state,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from train.errors import UsageError


def _optimizer_state():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt.state_dict()


def test_flatten_round_trip_keeps_int_keys_tuples_and_tensors():
    _, state = _optimizer_state()
    skeleton, tensors = flatten_state(state)
    json.dumps(skeleton)  # everything that is not a tensor is plain JSON
    back = unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.99)
    assert set(back["state"]) == {0, 1}
    assert torch.equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_flatten_refuses_what_would_need_pickle():
    with pytest.raises(TypeError, match="without pickle"):
        flatten_state({"f": object()})


def _save(run, step, config, net, state):
    return save_checkpoint(run, step, net.state_dict(), {"optimizer": state}, config, keep=2)


def test_save_load_keep_and_tmp_leftovers(tmp_path):
    net, state = _optimizer_state()
    config = {"lr": 1e-3, "unet": [1, 2]}
    (tmp_path / "checkpoint-30.tmp").mkdir()  # what a SIGKILL during a save leaves behind
    for step in (10, 20, 30):
        _save(tmp_path, step, config, net, state)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-30"]
    assert not list(tmp_path.glob("*.tmp"))
    ckpt = find_checkpoint(tmp_path)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "state.safetensors",
    ]
    step, model_state, training = load_checkpoint(ckpt, config, ("lr", "unet"))
    assert step == 30 and torch.equal(model_state["weight"], net.weight.detach())
    torch.optim.AdamW(net.parameters()).load_state_dict(training["optimizer"])


def test_corrupt_or_mismatched_checkpoint_is_refused(tmp_path):
    net, state = _optimizer_state()
    ckpt = _save(tmp_path, 5, {"lr": 1e-3}, net, state)
    with pytest.raises(UsageError, match="does not match this run"):
        load_checkpoint(ckpt, {"lr": 2e-3}, ("lr",))
    data = bytearray((ckpt / "state.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (ckpt / "state.safetensors").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="corrupt"):
        load_checkpoint(ckpt, {"lr": 1e-3}, ("lr",))
    (ckpt / "checkpoint.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupt"):
        load_checkpoint(ckpt, {"lr": 1e-3}, ("lr",))
    with pytest.raises(UsageError, match="nothing to resume"):
        find_checkpoint(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)
