"""A real ComfyUI server for the integration tests, and an API-format workflow builder.

The server runs from ``COMFYUI_DIR`` with ``COMFYUI_PYTHON`` on 127.0.0.1, CPU only, offline, with a fresh base
directory (``--base-directory``): its ``custom_nodes/negguide`` links to this repository, its
``models/checkpoints`` holds the checkpoint, outputs land there too. The ComfyUI checkout is not modified.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, comfyui_dir: str, base: Path, checkpoint: Path | None, python: str, with_nodes: bool = True):
        self.comfyui_dir, self.base, self.python, self.with_nodes = comfyui_dir, base, python, with_nodes
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
        link = base / "custom_nodes" / "negguide"
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        self.checkpoint = None if checkpoint is None else checkpoint.name  # None: the frontend alone
        if checkpoint is not None and not (base / "models" / "checkpoints" / checkpoint.name).exists():
            (base / "models" / "checkpoints" / checkpoint.name).symlink_to(checkpoint)
        self.log = base / f"server-{self.port}.log"

    def start(self, timeout: float = 600) -> Server:
        args = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--disable-auto-launch", "--disable-api-nodes", "--preview-method", "none",
                "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:"]
        if not self.with_nodes:
            args.append("--disable-all-custom-nodes")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"}
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(args, cwd=self.comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer in time:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{path}: HTTP {e.code}: {e.read().decode()[:2000]}") from e
        return json.loads(body) if body else None

    def submit(self, graph: Graph) -> str:
        return self.post("/prompt", {"prompt": graph.nodes})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 3600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                return history[prompt_id]
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, graph: Graph) -> Result:
        before = len(self.log_text())
        started = time.time()
        entry = self.wait(self.submit(graph))
        return Result(self, entry, self.log_text()[before:], time.time() - started)


class Result:
    """A finished prompt: its status, outputs (latents read back bit-exact) and its part of the server log."""

    def __init__(self, server: Server, entry: dict, log: str, seconds: float):
        self.server, self.entry, self.log, self.seconds = server, entry, log, seconds
        self.status = entry["status"]["status_str"]
        self.messages = {m[0]: m[1] for m in entry["status"]["messages"]}

    def latent(self, node: str):
        from safetensors.torch import load_file

        item = self.entry["outputs"][node]["latents"][0]
        return load_file(self.server.base / "output" / item["subfolder"] / item["filename"])["latent_tensor"]

    def text(self, node: str) -> str:
        return "\n".join(self.entry["outputs"][node]["text"])

    def image_path(self, node: str) -> Path:
        item = self.entry["outputs"][node]["images"][0]
        return self.server.base / "output" / item["subfolder"] / item["filename"]

    @property
    def error(self) -> str:
        e = self.messages.get("execution_error", {})
        return f"{e.get('exception_type')}: {e.get('exception_message')}"

    def assert_clean(self) -> None:
        assert self.status == "success", self.error
        bad = [line for line in self.log.splitlines() if "Traceback" in line or "Error" in line or "!!!" in line]
        assert not bad, "\n".join(bad)


class Graph:
    """An API-format workflow: ``add`` returns the node id; ``[id, i]`` is its output i."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node = str(len(self.nodes) + 1)
        self.nodes[node] = {"class_type": class_type, "inputs": inputs}
        return node


def default_python() -> str:
    return os.environ.get("COMFYUI_PYTHON", sys.executable)
