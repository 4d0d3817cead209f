#!/usr/bin/env bash
# The small-scale Laplacian-networks experiment (issue 13) on this CPU: scikit-learn's digits (50
# training images per class, the other 1,297 for testing), the authors' PreAct layout scaled down
# (preact-small: two blocks of 16 and 32 channels, 5 taps), their optimizer and schedule shape (SGD
# 0.1, momentum 0.9, weight decay 5e-4, batch 100, the rate ×0.01 halfway) over 60 epochs; the
# variants V (vanilla), P (Parseval β = 0.01), R (the smoothness regularizer, m = 2), PR and GEO
# (geometry targets instead of cross-entropy), SEEDS seeds each; then the robustness suite on every
# run with the attacks scaled to 8×8 images; then the report over seeds (medians, quartiles, paired
# Wilcoxon tests against V).
#
#   bash benches/laplacian_digits.sh      (OUT=runs/laplacian-digits SEEDS=10 JOBS=2 GAMMA=0.001)
#
# Finished runs and evaluations are kept: running it again continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/laplacian-digits}
SEEDS=${SEEDS:-10}
JOBS=${JOBS:-2}
GAMMA=${GAMMA:-0.001}  # the authors' 0.01 (weight γ² = 1e-4) costs this small net ~10 points of clean accuracy
COMMON="--dataset digits --train-per-class 50 --arch preact-small --steps 300 --eval-every 150 --threads 1 --no-progress"
ATTACKS="--snrs-db 30,20,15,10,5,0 --fgsm-snr-db 20 --pgd-eps 0.05 --pgd-step 0.01 --pgd-iterations 20 --draws 3"
declare -A OPTIONS=([V]="" [P]="--parseval 0.01" [R]="--smoothness $GAMMA" [PR]="--parseval 0.01 --smoothness $GAMMA" [GEO]="--loss geo")
VARIANTS=(V P R PR GEO)

mkdir -p "$OUT"
runs=()
for seed in $(seq 0 $((SEEDS - 1))); do
  for variant in "${VARIANTS[@]}"; do
    runs+=("$OUT/$variant-$seed")
  done
done
for run in "${runs[@]}"; do  # (a pipeline's loop runs in a subshell: runs is filled above)
  variant=$(basename "$run") && variant=${variant%-*} && seed=${run##*-}
  if [[ ! -f $run/metrics.json ]]; then
    echo "$PY -m latentops classify $COMMON ${OPTIONS[$variant]} --seed $seed --resume --out $run > $run.log 2>&1"
  fi
done | xargs -P "$JOBS" -I{} bash -c "{}"

for run in "${runs[@]}"; do
  if [[ ! -f $run/robustness.json ]]; then
    echo "OMP_NUM_THREADS=1 $PY -m latentops robustness $run $ATTACKS --no-progress > $run.robustness.log 2>&1"
  fi
done | xargs -P "$JOBS" -I{} bash -c "{}"

$PY -m latentops report "${runs[@]}" --out "$OUT"
