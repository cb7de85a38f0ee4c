"""Integration with a real WebUI through its HTTP API. Runs only when ``WEBUI_DIR`` points to a checkout.

    WEBUI_DIR=/path/to/stable-diffusion-webui WEBUI_CKPT=/path/to/model.safetensors \
    WEBUI_PYTHON=/path/to/webui-venv/bin/python  bash run.sh test tests/webui/test_webui_integration.py

The test links this repository into ``$WEBUI_DIR/extensions/negguide`` (if nothing is there yet), starts the
WebUI on 127.0.0.1 with ``--api --nowebui`` (CPU, no downloads, no install steps), drives
``/sdapi/v1/txt2img`` with fixed seeds and ``alwayson_scripts``, and greps the server log: the WebUI only
logs exceptions raised in callbacks and still answers 200. ``WEBUI_ARGS`` adds launch arguments.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

WEBUI_DIR = os.environ.get("WEBUI_DIR")
IS_FORGE = bool(WEBUI_DIR) and (Path(WEBUI_DIR) / "backend" / "sampling").is_dir()
pytestmark = pytest.mark.skipif(not WEBUI_DIR, reason="WEBUI_DIR is not set (no real WebUI to test against)")

ROOT = Path(__file__).resolve().parents[2]
DNG = "Dynamic negative guidance (DNG)"
WIN = "Windowed negative prompt"
DNS = "Diffusion-negative sample (DNS)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, log: Path):
        self.port = _free_port()
        self.log = log
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self):
        webui = Path(WEBUI_DIR)
        ext = webui / "extensions" / "negguide"
        if not ext.exists():
            ext.symlink_to(ROOT, target_is_directory=True)
        python = os.environ.get("WEBUI_PYTHON", sys.executable)
        args = [
            "launch.py",
            "--skip-install",
            "--skip-prepare-environment",
            "--skip-torch-cuda-test",
            "--skip-version-check",
            "--api",
            "--nowebui",
            "--server-name",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        args += ["--always-cpu"] if IS_FORGE else ["--no-download-sd-model", "--use-cpu", "all", "--no-half"]
        if os.environ.get("WEBUI_CKPT"):
            args += ["--ckpt", os.environ["WEBUI_CKPT"]]
        args += shlex.split(os.environ.get("WEBUI_ARGS", ""))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(
            [python, *args], cwd=webui, stdout=self.fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.time() + float(os.environ.get("WEBUI_START_TIMEOUT", "600"))
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"WebUI exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            try:
                self.get("/sdapi/v1/options")
                return self
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"WebUI did not answer in time:\n{self.log.read_text()[-4000:]}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.fh.close()

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path, payload):
        req = urllib.request.Request(
            self.base + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def log_text(self):
        self.fh.flush()
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("webui") / "server.log").start()
    s.post("/sdapi/v1/options", {"live_previews_enable": False, "samples_save": False, "grid_save": False})
    yield s
    s.stop()


def txt2img(server, args=None, **kw):
    payload = {
        "prompt": "a red car",
        "negative_prompt": "rust",
        "steps": 6,
        "width": 64,
        "height": 64,
        "seed": 1234,
        "sampler_name": "Euler a",
        "cfg_scale": 6.0,
        "batch_size": 1,
        **kw,
    }
    if IS_FORGE and payload.get("enable_hr"):
        # Forge's API needs these for a hires pass; hires CFG = CFG keeps the negative branch there (at Forge's
        # default hires CFG 1 Forge drops the negative prompt, and negguide says so in the log)
        payload.setdefault("hr_additional_modules", ["Use same choices"])
        payload.setdefault("hr_cfg", payload["cfg_scale"])
    if args is not None:
        payload["alwayson_scripts"] = {"negative guidance": {"args": args}}
    before = len(server.log_text())
    r = server.post("/sdapi/v1/txt2img", payload)
    log = server.log_text()[before:]
    info = json.loads(r["info"])
    return r, info, log


def pixels(b64):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def _clean(log):
    bad = [line for line in log.splitlines() if "Traceback" in line or "Error" in line or "skipped" in line]
    assert not bad, "\n".join(bad)


def test_extension_loaded(server):
    scripts = server.get("/sdapi/v1/script-info")
    names = {s["name"] for s in scripts}
    assert {"negative guidance", "diffusion-negative prompting", "negative prompt timing sweep"} <= names


def test_off_and_full_window_equal_stock(server):
    stock, _, log = txt2img(server)
    off, _, log2 = txt2img(server, ["Off"])
    full, info, log3 = txt2img(server, [WIN, "steps", 1, 6])
    _clean(log + log2 + log3)
    assert pixels(off["images"][0]) == pixels(stock["images"][0])
    assert pixels(full["images"][0]) == pixels(stock["images"][0])  # negative on every step = stock
    assert "NegGuide mode: windowed" in info["infotexts"][0]


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "DDIM", "Heun"])
def test_modes_run_clean(server, sampler):
    stock, _, _ = txt2img(server, sampler_name=sampler)
    for args in ([WIN, "steps", 2, 3], [DNS], [DNG, "steps", 5, 15, "Same as first pass", 5, 15, 20.0]):
        r, info, log = txt2img(server, args, sampler_name=sampler, batch_size=2)
        _clean(log)
        assert len(r["images"]) == 2
        assert pixels(r["images"][0]) != pixels(stock["images"][0])
        assert "NegGuide mode" in info["infotexts"][0]


def test_dng_hires_batch_and_plot(server):
    args = [DNG, "steps", 5, 15, "Same as first pass", 5, 15, 5.0, 0.01, 0.2, 0.003, 0.8, "auto", True]
    r, info, log = txt2img(
        server,
        args,
        batch_size=2,
        n_iter=2,
        enable_hr=True,
        hr_scale=1.5,
        hr_second_pass_steps=3,
        denoising_strength=0.5,
    )
    _clean(log)
    assert len(r["images"]) >= 4 + 1  # four images (the API may add a grid) and the lambda/p plot
    assert "NegGuide tracker: transition" in info["infotexts"][0]


def test_invalid_settings_no_generation_and_the_reason_in_the_response(server):
    r, info, log = txt2img(server, [WIN, "steps", 0, 3])
    assert r["images"] == [] or info.get("infotexts") in ([], None)
    assert "count from step 1" in log  # the console
    assert "count from step 1" in info["extra_generation_params"]["NegGuide error"]  # the API client
    assert "NegGuide error" in info["infotexts"][0]  # the generation info the UI shows under the gallery


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_sweep_baselines_equal_an_empty_negative_prompt(server, sampler):
    """lambda0 = 0 and an empty window are well-defined: the image of an empty negative prompt, bit for bit."""
    stock, _, log = txt2img(server, negative_prompt="", sampler_name=sampler, batch_size=2)
    for args in ([DNG, "steps", 5, 15, "Same as first pass", 5, 15, 0.0], [WIN, "steps", 6, 5], [WIN, "steps", 9, 12]):
        r, info, log2 = txt2img(server, args, sampler_name=sampler, batch_size=2)
        _clean(log + log2)
        assert [pixels(b) for b in r["images"][:2]] == [pixels(b) for b in stock["images"][:2]], args
        assert "NegGuide mode" in info["infotexts"][0]


def test_long_prompt_and_ngms(server):
    long = ", ".join(["a very detailed red sports car"] * 14)
    args = [DNG, "steps", 5, 15, "Same as first pass", 5, 15, 5.0]
    r, info, log = txt2img(server, args, prompt=long, s_min_uncond=100.0, sampler_name="Euler")
    _clean(log)
    assert len(r["images"]) == 1


def test_timing_sweep_script(server):
    r, info, log = txt2img(server, None, script_name="negative prompt timing sweep", script_args=["1, 3", "2", True])
    _clean(log)
    assert len(r["images"]) == 1 + 2 + 2  # the grid, two references, two windows


def test_dnp_script_manual_caption(server):
    r, info, log = txt2img(
        server,
        None,
        script_name="diffusion-negative prompting",
        script_args=[4.0, "Manual: use my caption", "a blue boat", "BLIP (WebUI interrogator)"],
    )
    _clean(log)
    assert len(r["images"]) == 1 and "DNP caption: a blue boat" in info["infotexts"][0]
    r, info, log = txt2img(
        server,
        None,
        script_name="diffusion-negative prompting",
        script_args=[4.0, "Manual: only make the DNS images", "", "BLIP (WebUI interrogator)"],
    )
    _clean(log)
    assert len(r["images"]) == 1 and "NegGuide mode: dns" in info["infotexts"][0]
