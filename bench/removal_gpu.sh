#!/usr/bin/env bash
# The GPU-owed slice of the MNIST digit-0 removal study (issue 18), for bench/gpu_checks.sh's removal-gpu part:
# the paper's sampler (ancestral DDPM at the training T = 1000, variance beta_t: right at T, unlike a respaced
# chain) with 10,240 samples per point, the FID/KID reference = the whole training set (without 0 / with it),
# the real-vs-real floor at the same count, one sweep per seed. Points, in order: unguided, oracle, NP lambda 0.5,
# DNG lambda0 2 (p_max 0.8), NP following that DNG point's mean lambda(t). Each finished point is on disk
# (resumable), so a run cut by its timeout keeps what it finished; `python -m train removal` writes the report of
# a seed whose points are all done.
#
#   bash bench/removal_gpu.sh OUT_DIR DATA_DIR MODELS_DIR     # GPU; MODELS_DIR as reproduce-removal lays it out:
#                                                             # classifier/, ddpm-{all,only0,drop0}/model
#   bash bench/removal_gpu.sh --smoke OUT_DIR DATA_DIR        # CPU, seconds: tiny random models, 6 samples, 4 steps
#
# Environment: REMOVAL_GPU_SEEDS (default "0 1 2"), REMOVAL_GPU_SAMPLES (10240), REMOVAL_GPU_FID
# (inception,classifier), NEGGUIDE_PYTHON / PY (the interpreter).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY=${PY:-${NEGGUIDE_PYTHON:-python3}}

SMOKE=0
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
if [[ $# -lt $((3 - SMOKE)) ]]; then
  echo "usage: bash bench/removal_gpu.sh [--smoke] OUT_DIR DATA_DIR [MODELS_DIR]" >&2
  exit 2
fi
OUT_DIR=$1 DATA_DIR=$2 MODELS=${3:-}
mkdir -p "$OUT_DIR" || exit 2

if [[ $SMOKE == 1 ]]; then  # tiny random models saved as the train commands save them (the tests' fixtures)
  MODELS="$OUT_DIR/tiny-models"
  "$PY" -c "import sys; sys.path.insert(0, 'tests/train'); from pathlib import Path; \
from removal_fixtures import study_dirs; study_dirs(Path(sys.argv[1]))" "$MODELS" || exit 1
  UNCOND=$MODELS/uncond FORGET=$MODELS/forget ORACLE=$MODELS/oracle CLASSIFIER=$MODELS/classifier
  SEEDS=${REMOVAL_GPU_SEEDS:-0 1}
  SIZES=(--samples 6 --batch-size 6 --ddpm-steps 4 --fid classifier --fid-reference-count 40 --cpu --threads 1)
else
  UNCOND=$MODELS/ddpm-all/model FORGET=$MODELS/ddpm-only0/model ORACLE=$MODELS/ddpm-drop0/model
  CLASSIFIER=$MODELS/classifier
  SEEDS=${REMOVAL_GPU_SEEDS:-0 1 2}
  # 0 FID resamples: an eigen-decomposition each would cost minutes per point at 10,240 samples; KID and the
  # label statistics keep their paired intervals
  SIZES=(--samples "${REMOVAL_GPU_SAMPLES:-10240}" --batch-size 2048 --ddpm-steps 1000
         --fid "${REMOVAL_GPU_FID:-inception,classifier}" --fid-resamples 0)
fi

for seed in $SEEDS; do
  echo "== seed $seed"
  "$PY" -m train removal --dataset mnist --remove 0 --uncond "$UNCOND" --forget "$FORGET" --oracle "$ORACLE" \
    --classifier "$CLASSIFIER" --data-dir "$DATA_DIR" --out "$OUT_DIR/seed$seed" --preset mnist-paper \
    --samplers ddpm --methods np,dng,np-schedule --np-scales 0.5 --dng-lambda0 2 --dng-p-max 0.8 \
    --seed "$seed" "${SIZES[@]}" || exit 1
done
