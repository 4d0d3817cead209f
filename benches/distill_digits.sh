#!/usr/bin/env bash
# The small-scale latent-geometry-graph distillation experiment (issue 13) on this CPU: the LGG
# authors' teacher and student, WRN-28-1 and WRN-28-0.5 (3 taps each: the groups' outputs, the last
# pooled), on scikit-learn's digits (50 training images per class, the other 1,297 for testing), SGD
# 0.1, momentum 0.9, weight decay 5e-4, the rate ×0.2 at 30/60/80% of training as theirs; one teacher
# (seed 0), then SEEDS students per method (alone, Hinton KD τ = 4 λ = 16, RKD-D 25, LGG 25, HKD+LGG)
# with paired seeds; then the report over seeds (paired Wilcoxon tests against the student alone).
#
#   bash benches/distill_digits.sh      (OUT=runs/distill-digits SEEDS=10 JOBS=2 STEPS=500)
#
# Finished runs are kept: running it again continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/distill-digits}
SEEDS=${SEEDS:-10}
JOBS=${JOBS:-2}
STEPS=${STEPS:-500}
SCHEDULE="--steps $STEPS --lr-milestones 0.3,0.6,0.8 --lr-gamma 0.2 --eval-every $STEPS --threads 1 --no-progress"
METHODS=(alone hkd rkd lgg hkd+lgg)

mkdir -p "$OUT"
if [[ ! -f $OUT/teacher/metrics.json ]]; then
  $PY -m latentops classify --arch wrn-28-1 --dataset digits --train-per-class 50 $SCHEDULE --seed 0 \
    --resume --out "$OUT/teacher" > "$OUT/teacher.log" 2>&1
fi
runs=()
for seed in $(seq 0 $((SEEDS - 1))); do
  for method in "${METHODS[@]}"; do
    runs+=("$OUT/$method-$seed")
  done
done
for run in "${runs[@]}"; do  # (a pipeline's loop runs in a subshell: runs is filled above)
  method=$(basename "$run") && method=${method%-*} && seed=${run##*-}
  if [[ ! -f $run/metrics.json ]]; then
    echo "$PY -m latentops distill --teacher $OUT/teacher --arch wrn-28-0.5 --method $method $SCHEDULE --seed $seed --resume --out $run > $run.log 2>&1"
  fi
done | xargs -P "$JOBS" -I{} bash -c "{}"

$PY -m latentops report "$OUT/teacher" "${runs[@]}" --out "$OUT"
