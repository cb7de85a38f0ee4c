"""Integration with a real WebUI through its HTTP API. Runs only when ``WEBUI_DIR`` points to a checkout.

    WEBUI_DIR=/path/to/stable-diffusion-webui WEBUI_CKPT=/path/to/model.safetensors \
    WEBUI_PYTHON=/path/to/webui-venv/bin/python  bash run.sh test tests/webui/test_webui_integration.py

Any program of the family: AUTOMATIC1111 1.8-1.10, Forge, reForge, Forge Classic, Forge Neo. The launch flags
come from what the checkout's own argument parsers define (CPU: ``--always-cpu``, Neo's ``--cpu`` or A1111's
``--use-cpu all``; the model: ``--ckpt``, or Neo's ``--ckpt-dirs`` with a folder holding only ``WEBUI_CKPT``).

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
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

WEBUI_DIR = os.environ.get("WEBUI_DIR")
# the Forge line (Forge, reForge, Forge Classic / Neo): its hires API fields and CFG-1 behaviour
FORGE_LINE = bool(WEBUI_DIR) and (Path(WEBUI_DIR) / "modules_forge").is_dir()
pytestmark = pytest.mark.skipif(not WEBUI_DIR, reason="WEBUI_DIR is not set (no real WebUI to test against)")

ROOT = Path(__file__).resolve().parents[2]
DNG = "Dynamic negative guidance (DNG)"
WIN = "Windowed negative prompt"
DNS = "Diffusion-negative sample (DNS)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_is_sdxl(path: str | None) -> bool:
    """From the safetensors header's key names (SDXL's second text encoder), without loading anything."""
    if not path or not path.endswith(".safetensors"):
        return False
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return "conditioner.embedders.1." in f.read(n).decode(errors="replace")


SDXL = checkpoint_is_sdxl(os.environ.get("WEBUI_CKPT"))

# where each program of the family defines its launch flags
ARG_PARSERS = ("modules/cmd_args.py", "ldm_patched/modules/args_parser.py", "backend/args.py")


def defined_flags(webui: Path) -> set[str]:
    """The ``--flags`` the checkout's argument parsers define (read from their source: no import, no launch)."""
    text = "".join((webui / f).read_text(errors="replace") for f in ARG_PARSERS if (webui / f).is_file())
    return set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)["']""", text))


def launch_args(webui: Path, port: int, ckpt: str | None, model_dir: Path) -> list[str]:
    flags = defined_flags(webui)
    args = ["launch.py", "--skip-install", "--skip-prepare-environment", "--skip-torch-cuda-test",
            "--skip-version-check", "--api", "--nowebui", "--server-name", "127.0.0.1", "--port", str(port)]
    if "--skip-python-version-check" in flags:  # Forge Neo wants Python 3.13 and says so at every start
        args.append("--skip-python-version-check")
    if "--always-cpu" in flags:  # Forge, reForge, Forge Classic
        args.append("--always-cpu")
    elif "--cpu" in flags:  # Forge Neo
        args.append("--cpu")
    else:  # A1111
        args += ["--use-cpu", "all", "--no-half"]
    if "--no-download-sd-model" in flags:
        args.append("--no-download-sd-model")
    if ckpt and "--ckpt" in flags:
        args += ["--ckpt", ckpt]
    elif ckpt:  # Forge Neo has only --ckpt-dirs: a folder with this one model
        model_dir.mkdir(exist_ok=True)
        link = model_dir / Path(ckpt).name
        if not link.exists():
            link.symlink_to(Path(ckpt).resolve())
        args += ["--ckpt-dirs", str(model_dir)]
    return args


class Server:
    def __init__(self, log: Path):
        self.port = _free_port()
        self.log = log
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self):
        webui = Path(WEBUI_DIR)
        ext = webui / "extensions" / "negguide"
        if not ext.exists():
            ext.parent.mkdir(exist_ok=True)  # a fresh Forge Neo checkout has no extensions/ yet
            ext.symlink_to(ROOT, target_is_directory=True)
        python = os.environ.get("WEBUI_PYTHON", sys.executable)
        args = launch_args(webui, self.port, os.environ.get("WEBUI_CKPT"), self.log.parent / "models")
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
    if FORGE_LINE and payload.get("enable_hr"):
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
    # NGMS: the request's s_min_uncond (A1111, Forge) or the option (reForge reads only the option)
    r, info, log = txt2img(server, args, prompt=long, s_min_uncond=100.0, sampler_name="Euler",
                           override_settings={"s_min_uncond": 100.0})
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


@pytest.mark.skipif(SDXL, reason="SDXL encodes an empty *negative* prompt as zeros (DNS's empty branch), an empty "
                                   "positive prompt as text: no stock request has DNS's two branches")
@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_dns_is_stock_cfg_with_the_prompts_swapped(server, sampler):
    """DNS at s = CFG - 1 (Eq. 19): eps_empty + s (eps_empty - eps_prompt) is exactly the stock CFG of the prompt
    "" against the negative prompt = the prompt, at the same CFG scale."""
    stock, _, log = txt2img(server, prompt="", negative_prompt="a red car", sampler_name=sampler, batch_size=2)
    r, info, log2 = txt2img(server, [DNS], prompt="a red car", negative_prompt="rust", sampler_name=sampler,
                            batch_size=2)
    _clean(log + log2)
    assert [pixels(b) for b in r["images"][:2]] == [pixels(b) for b in stock["images"][:2]]
    assert "NegGuide mode: dns" in info["infotexts"][0]


def _differing_values(a: bytes, b: bytes) -> tuple[int, int]:
    """(largest difference of two 8-bit images, how many values differ)."""
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True) if x != y]
    return max(diffs, default=0), len(diffs)


BATCH_CASES = {
    "stock": None,
    "windowed": [WIN, "steps", 2, 3],
    "dns": [DNS],
    "dng": [DNG, "steps", 5, 15, "Same as first pass", 5, 15, 20.0],
}


@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_batch_image_is_the_single_run_of_its_seed(server, case):
    """Image i of a batch (seed s + i) == the single run of seed s + i: nothing of one image's guidance leaks into
    another's. Up to float32 rounding: the UNet and the VAE round differently at another batch size (stock itself
    moves a few values by one level of 255 on A1111 1.10.1), so at most one level in 1% of the values; two seeds
    differ almost everywhere. Exactly per image in float64: test_webui_forge_forks.py, test_webui_a1111.py."""
    args = BATCH_CASES[case]
    both, _, log = txt2img(server, args, batch_size=2, seed=1234)
    logs = log
    for i in range(2):
        one, _, log = txt2img(server, args, batch_size=1, seed=1234 + i)
        logs += log
        largest, count = _differing_values(pixels(both["images"][i]), pixels(one["images"][0]))
        assert largest <= 1 and count <= 0.01 * 64 * 64 * 3, (i, largest, count)
    _clean(logs)
    assert _differing_values(pixels(both["images"][0]), pixels(both["images"][1]))[1] > 0.5 * 64 * 64 * 3
