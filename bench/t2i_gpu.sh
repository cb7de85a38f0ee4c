#!/usr/bin/env bash
# The testbed's diffusion stage continued on one GPU from the shipped CPU-trained model (issue 19's GPU route):
#
#   bash bench/t2i_gpu.sh --prepare [RUN]  # here: copy RUN's (default runs/t2i-cpu) finished detector, VAE and
#                                          # adapted-detector stages into gpu/t2i/run (7 MB; ignore it, carry it)
#   bash bench/t2i_gpu.sh [MINUTES]        # the GPU machine: MINUTES (default 4) of training, then the quality bar
#
# Training: `python -m train t2i --preset gpu` (batch 256, 8 data workers, bf16 autocast, fused AdamW) on the
# diffusion stage alone, warm-started from models/shapes-t2i (--diffusion-init: fresh AdamW and EMA, 500 warm-up
# steps to LR 3e-4, the CPU run's LR), finished after MINUTES (--diffusion-minutes). Then `python -m train
# t2i-eval` (200 held-out captions x 2 seeds, DDIM 50, the model's CFG). Output in $OUT (else out/t2i_gpu):
# model.tar (the model folder without its VAE and detector, which are the shipped ones) and logs.tar (training
# log, stage_done.json, preview grids, the quality report). diffusers must import (carry its wheels: gpu_checks.sh).
# T2I_GPU_RUN (the prepared folder), T2I_GPU_PRESET, T2I_GPU_INIT and T2I_GPU_EVAL (extra t2i-eval arguments)
# change the defaults: the test
# (tests/train/test_t2i_gpu_script.py) runs the whole script on the CPU with the tiny preset that way.
set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

RUN=${T2I_GPU_RUN:-gpu/t2i/run}
if [[ ${1:-} == --prepare ]]; then
  src=${2:-runs/t2i-cpu}
  rm -rf "$RUN" && mkdir -p "$RUN" || exit 2
  for stage in detector vae detector-decoded; do
    [[ -f $src/$stage/stage_done.json ]] || { echo "$src/$stage is not finished" >&2; exit 2; }
    mkdir -p "$RUN/$stage" && cp -r "$src/$stage"/{final,stage_done.json,config.json} "$RUN/$stage/" || exit 2
  done
  cp -r "$src/tokenizer" "$RUN/" || exit 2
  echo "prepared $RUN ($(du -sh "$RUN" | cut -f 1)); carry gpu/t2i"
  exit 0
fi
minutes=${1:-4}
PY=${NEGGUIDE_PYTHON:-python3}
OUT_DIR=${OUT:-out/t2i_gpu}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/t2i-gpu.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
LOGS=$WORK/logs
mkdir -p "$OUT_DIR" "$LOGS" || exit 2
[[ -f $RUN/vae/stage_done.json ]] || { echo "no $RUN: run bash bench/t2i_gpu.sh --prepare here first" >&2; exit 2; }
rm -rf "$RUN/diffusion" "$RUN/model"  # a fresh continuation each call

export PYTHONUNBUFFERED=1
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "$(nproc) CPU cores; training $minutes min"
SECONDS=0
"$PY" -m train t2i --preset "${T2I_GPU_PRESET:-gpu}" --output-dir "$RUN" --stages diffusion \
  --diffusion-init "${T2I_GPU_INIT:-models/shapes-t2i}" \
  --diffusion-lr 3e-4 --diffusion-steps 10000000 --diffusion-minutes "$minutes" --checkpoint-minutes 0 \
  > "$LOGS/train.log" 2>&1
rc=$?
echo "train: exit $rc after $SECONDS s"
tr '\r' '\n' < "$LOGS/train.log" | grep -v '^\s*$' | tail -n 4
tail -n 2 "$RUN/diffusion/log.jsonl"
cp -r "$RUN/diffusion/log.jsonl" "$RUN/diffusion/samples" "$LOGS/" 2> /dev/null
cp "$RUN/diffusion/stage_done.json" "$LOGS/" 2> /dev/null
if [[ $rc == 0 ]]; then
  tar cf "$OUT_DIR/model.tar" -C "$RUN" --exclude=model/vae --exclude=model/detector model
  "$PY" -m train t2i-eval --model "$RUN/model" --out "$LOGS/eval" ${T2I_GPU_EVAL:-} > "$LOGS/eval.log" 2>&1
  rc=$?
  echo "eval: exit $rc at $SECONDS s"
  grep -v '^\s*$' "$LOGS/eval.log" | tail -n 25
fi
tar cf "$OUT_DIR/logs.tar" -C "$WORK" logs
exit $rc
