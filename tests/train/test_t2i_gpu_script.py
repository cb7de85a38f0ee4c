"""bench/t2i_gpu.sh, the GPU continuation of the testbed, run whole on the CPU with the tiny preset: what a GPU
session would run blind must at least work end to end."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_script_prepares_trains_exports_and_measures(tiny_t2i_run, tmp_path):
    env = {**os.environ, "T2I_GPU_RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"),
           "NEGGUIDE_PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "T2I_GPU_PRESET": "tiny", "T2I_GPU_INIT": str(tiny_t2i_run / "model"),
           "T2I_GPU_EVAL": "--prompts 2 --seeds 1 --steps 2 --batch-size 2 --cpu"}
    script = ["bash", str(ROOT / "bench" / "t2i_gpu.sh")]
    prepared = subprocess.run([*script, "--prepare", str(tiny_t2i_run)], env=env, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"detector", "vae", "detector-decoded", "tokenizer"}
    done = subprocess.run([*script, "0.001"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train: exit 0" in done.stdout and "eval: exit 0" in done.stdout
    with tarfile.open(tmp_path / "out" / "model.tar") as model:
        names = set(model.getnames())
    assert "model/unet/diffusion_pytorch_model.safetensors" in names and not any("model/vae" in n for n in names)
    with tarfile.open(tmp_path / "out" / "logs.tar") as logs:
        names = set(logs.getnames())
    assert {"logs/stage_done.json", "logs/log.jsonl", "logs/eval/quality.json"} <= names
