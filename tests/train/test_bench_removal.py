"""bench/bench_removal.py (our removal sampler vs the DNG authors' loop) and bench/gpu_checks.sh, at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import bench_removal as B  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_authors_tables_at_T_are_their_linear_schedule():
    tables = B.authors_tables(B.DiscreteSchedule.from_kind(), 1000)
    assert tables.timesteps == list(range(999, -1, -1))
    their_betas = torch.linspace(1e-4, 0.02, 1000).flip(0)  # their GaussianDiffusion, rho = 1, walked from T-1
    torch.testing.assert_close(tables.betas, their_betas)
    assert tables.alphas_cumprod_prev[-1] == tables.alphas_cumprod[-1]  # their a_bar_tmin1 at t = 0
    assert tables.alphas_cumprod_prev[0] == tables.alphas_cumprod[1]


def test_respaced_tables_step_between_the_kept_timesteps():
    tables = B.authors_tables(B.DiscreteSchedule.from_kind(), 10)
    abar_next = torch.cat([tables.alphas_cumprod[1:], torch.ones(1)])
    torch.testing.assert_close(tables.alphas, tables.alphas_cumprod / abar_next)


def test_both_samplers_agree_in_fp32_from_the_same_noise():
    models = B.random_models("mnist-tiny", CPU)
    check = B.agreement(models, 10, CPU)
    low, high = check["lambda_range"]
    assert low < 0.5 * high  # the near to-forget copy makes the guidance scale move
    assert check["max_lambda_diff"] <= 1e-4 * high
    assert check["max_abs_diff"] <= 1e-5 * max(1.0, check["max_abs_sample"])


def test_smoke_reports_both_samplers_and_their_ratio(tmp_path, capsys):
    result = B.main(["--smoke", "--json", str(tmp_path / "r.json")])
    assert result["finite"] and result["batch"] == 2 and result["steps"] == 3
    assert set(result["median_samples_per_s"]) == {"authors", "ours"}
    assert result["ratio"] == pytest.approx(result["median_samples_per_s"]["ours"]
                                            / result["median_samples_per_s"]["authors"])
    assert json.loads((tmp_path / "r.json").read_text())["ratio"] == result["ratio"]
    out = capsys.readouterr().out
    assert "authors' loop (gen_batch_DNG)" in out and "device: cpu:" in out


def test_trained_model_folders_replace_the_random_unets(tmp_path):
    from removal_fixtures import tiny_model_dir

    folders = [str(tiny_model_dir(tmp_path / name, seed)) for name, seed in (("uncond", 1), ("forget", 2))]
    result = B.main(["--model", *folders, "--device", "cpu", "--batch", "2", "--steps", "3", "--rounds", "1",
                     "--check-steps", "0"])
    assert result["models"].startswith("trained:") and result["finite"] and "agreement" not in result


def table_rows(output: str) -> dict[str, str]:
    """part -> status, from the final markdown table of gpu_checks.sh (per-mode rows keep their part)."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] not in ("part", "---"):
            rows[cells[0]] = cells[1]
    return rows


def allowed_statuses(part: str) -> set[str]:
    """ok, or the skip the script gives where this machine lacks the part's inputs."""
    from train.paths import shared_root

    shared = shared_root()
    allowed = {"ok", "note"} if part == "train" else {"ok"}  # note: no dataset, random pixels
    if part == "classifier" and not (shared / "datasets" / "cifar10").is_dir():
        allowed.add("skipped: no data (CIFAR-10 not in shared/datasets or ../shared/datasets)")
    if part == "webui" and not (shared / "tokenizers" / "clip-vit-l-14").is_dir():
        allowed.add("skipped: no CLIP tokenizer files (shared/tokenizers/clip-vit-l-14)")
    if part == "removal-gpu" and not (shared / "datasets" / "mnist").is_dir():
        allowed.add("skipped: no data (MNIST not in shared/datasets or ../shared/datasets)")
    return allowed


@pytest.mark.slow
def test_gpu_checks_smoke_runs_every_part(tmp_path):
    # ~50 s on the busy 2-core build machine
    env = {**os.environ, "OUT": str(tmp_path), "NEGGUIDE_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_checks.sh", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = table_rows(done.stdout)
    for part in ("removal", "webui", "train", "classifier", "removal-gpu"):
        statuses = {status for name, status in rows.items() if name.split(" ")[0] == part}
        assert statuses and statuses <= allowed_statuses(part), (part, statuses, done.stdout[-3000:])
    if "ok" in {status for name, status in rows.items() if name.startswith("removal-gpu")}:
        # the removal slice's smoke: both seeds' points, the ablation last, each with its floor
        names = {name for name in rows if name.startswith("removal-gpu seed")}
        assert {"removal-gpu seed0 ddpm4-np-schedule-2-pmax0.8", "removal-gpu seed1 ddpm4-none-0"} <= names
        assert (tmp_path / "removal-gpu" / "seed1" / "summary.md").is_file()
    assert (tmp_path / "table.md").read_text().strip() == done.stdout[done.stdout.index("| part |"):].strip()
