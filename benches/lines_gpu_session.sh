#!/usr/bin/env bash
# The training pipelines' GPU figures, for a call on the GPU machine after latentops is built and
# installed there (benches/gpu_check.sh's build phase does that):
#  1. all eight models on lines, STEPS steps each, and their report side by side;
#  2. training throughput (images/s) of each model with latentops' kernels (--backend ops) and with
#     the pure-torch reference (--backend torch), side by side in a second report.
# The run folders go to RUNS (default runs/gpu-lines, inside the working tree, so a second call on a
# warm machine resumes them); what comes back is under OUT, at most five files: report.md and
# report.png of each report, and runs.tgz with every run's metrics.json and config.json.
# STEPS defaults to 2048 (minutes for eight models at batch 64); the published length is
# ACAI's 2^24 images (STEPS=262144 at batch 64), hours on one GPU: run it in pieces with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-runs/gpu-lines-out}
RUNS=${RUNS:-runs/gpu-lines}
STEPS=${STEPS:-2048}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-500}
MODELS=${MODELS:-baseline dropout denoising vae aae vqvae softvq acai}

mkdir -p "$OUT" "$RUNS"
runs=()
for model in $MODELS; do
    # --resume: running the script again continues interrupted runs instead of refusing them.
    $PY -m latentops train --model "$model" --dataset lines --device cuda --steps "$STEPS" \
        --kmeans-restarts 1000 --no-progress --resume --out "$RUNS/$model" > "$RUNS/$model.log"
    runs+=("$RUNS/$model")
done
$PY -m latentops report "${runs[@]}" --out "$OUT/quality"

throughput=()
for model in $MODELS; do
    for backend in ops torch; do
        # One evaluation at the end and no downstream step: the figure of interest is images/s.
        rm -rf "$RUNS/throughput/$model-$backend"
        $PY -m latentops train --model "$model" --dataset lines --device cuda --backend "$backend" \
            --steps "$THROUGHPUT_STEPS" --eval-every "$THROUGHPUT_STEPS" --log-every 100 \
            --no-downstream --no-progress --out "$RUNS/throughput/$model-$backend" > /dev/null
        throughput+=("$RUNS/throughput/$model-$backend")
    done
done
$PY -m latentops report "${throughput[@]}" --out "$OUT/throughput"
(cd "$RUNS" && find . \( -name metrics.json -o -name config.json \) -print0 | tar czf - --null -T -) > "$OUT/runs.tgz"
