#!/usr/bin/env bash
# The GPU targets of issue 5, for a session on the GPU machine (after building and installing
# latentops there, see gpu_session.sh):
#  1. all eight models on lines with the `latentops train` defaults (ACAI's 2^24 images at batch 64),
#     or STEPS steps when the full run does not fit, and the report side by side;
#  2. training throughput (images/s) of each model with latentops' kernels (--backend ops) and with
#     the pure-torch reference (--backend torch), side by side in a second report.
# Outputs under OUT (default runs/gpu-lines); commit the report.md / report.png files under
# benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-runs/gpu-lines}
STEPS=${STEPS:-262144}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-2000}
MODELS=${MODELS:-baseline dropout denoising vae aae vqvae softvq acai}

mkdir -p "$OUT"
runs=()
for model in $MODELS; do
    # --resume: running the script again continues interrupted runs instead of refusing them.
    $PY -m latentops train --model "$model" --dataset lines --device cuda --steps "$STEPS" \
        --kmeans-restarts 1000 --no-progress --resume --out "$OUT/$model" > "$OUT/$model.log"
    runs+=("$OUT/$model")
done
$PY -m latentops report "${runs[@]}" --out "$OUT"

throughput=()
for model in $MODELS; do
    for backend in ops torch; do
        # Two evaluations at most and no downstream step: the figure of interest is images/s.
        rm -rf "$OUT-throughput/$model-$backend"
        $PY -m latentops train --model "$model" --dataset lines --device cuda --backend "$backend" \
            --steps "$THROUGHPUT_STEPS" --eval-every "$THROUGHPUT_STEPS" --log-every 100 \
            --no-downstream --no-progress --out "$OUT-throughput/$model-$backend" > /dev/null
        throughput+=("$OUT-throughput/$model-$backend")
    done
done
$PY -m latentops report "${throughput[@]}" --out "$OUT-throughput"
