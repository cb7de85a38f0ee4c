"""Helpers of the resume tests: kill a training process mid-run, and compare checkpoints bitwise."""

import signal
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def kill_once_exists(cmd: list[str], env: dict, marker: Path, timeout_s: float = 120) -> None:
    """Start `cmd` and SIGKILL it as soon as `marker` (a checkpoint folder) appears, while it still runs."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    deadline = time.time() + timeout_s
    while not marker.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, f"no {marker.name} after {timeout_s} s"
        time.sleep(0.02)
    assert proc.poll() is None, "too fast to kill mid-run"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def last_checkpoint_step(run: Path) -> int:
    return max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*") if not p.name.endswith(".tmp"))


def assert_same_tensors(a_file: Path, b_file: Path, context: str) -> None:
    a, b = load_file(a_file), load_file(b_file)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{a_file.name}:{key} differs {context}"


def assert_no_pickles(run: Path) -> None:
    suffixes = {p.suffix for p in run.rglob("*") if p.is_file()}
    assert not suffixes & {".pt", ".pth", ".bin", ".pkl", ".ckpt"}, suffixes
