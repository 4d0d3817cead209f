#!/usr/bin/env bash
# `make run`: what latentops is for, in about 5 minutes on a 2-core CPU, on embedded data only
# (scikit-learn's digits; the op table draws its own random inputs). Three parts, each printed as it
# ends, and gathered with its pictures under $OUT (report.md):
#   1. ops.md: latentops' CPU kernels of the four op families against what users run today, small
#      cases, in one process (benches/run.py --quick; `make bench` runs the full table);
#   2. a digits MLP (2 × 1024 hidden units) trained, then `latentops compress`ed: 99% of its big
#      layer pruned, every layer k-means-shared into 32 levels, fine-tuned, stored in one file and
#      judged from that file: accuracy before and after (McNemar's test), ψ, each layer's time;
#   3. one experiment of the classifier pipelines: Parseval networks against plain ones under
#      test-time dropout (preact-small, SEEDS paired seeds, Wilcoxon signed-rank test).
#
#   bash benches/showcase.sh      (OUT=runs/main-<host> SEEDS=10 JOBS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/main-$(hostname)}
SEEDS=${SEEDS:-10}  # 6 left the dropout gain at p = 0.06 (the smallest two-sided p of 6 pairs is 0.03)
JOBS=${JOBS:-2}
rm -rf "$OUT" && mkdir -p "$OUT"
start=$SECONDS
step() { echo; echo "== $1 ($((SECONDS - start)) s so far)"; }

step "1. the op table: latentops against the peers on this CPU"
$PY benches/run.py --quick --only nearest_centroid,soft_quantize,graph_smoothness,compressed_linear \
  --out "$OUT/ops.md" > "$OUT/ops.log" 2>&1 || { cat "$OUT/ops.log"; exit 1; }
cat "$OUT/ops.md"

step "2. a digits MLP, trained, then compressed"
$PY -m latentops classify --arch mlp --width 1024 --dataset digits --lr 0.02 --weight-decay 0 --steps 1500 \
  --threads 2 --no-progress --out "$OUT/mlp" > "$OUT/mlp.log" 2>&1 || { cat "$OUT/mlp.log"; exit 1; }
$PY -m latentops compress "$OUT/mlp" --prune 0.99 --per-layer hidden.0=0.95,head=0.9 --quantizer cws --k 32 \
  --steps 1000 --lr 0.02 --threads 2 --no-progress --out "$OUT/mlp-compressed" > "$OUT/compress.log" 2>&1 \
  || { cat "$OUT/compress.log"; exit 1; }
cat "$OUT/mlp-compressed/report.md"

step "3. Parseval networks under test-time dropout ($SEEDS seeds)"
COMMON="--dataset digits --train-per-class 50 --arch preact-small --steps 300 --eval-every 300 --threads 1 --no-progress"
runs=()
for seed in $(seq 0 $((SEEDS - 1))); do runs+=("$OUT/parseval/V-$seed" "$OUT/parseval/P-$seed"); done
mkdir -p "$OUT/parseval"
for run in "${runs[@]}"; do  # (a pipeline's loop runs in a subshell: runs is filled above)
  variant=$(basename "$run") && seed=${variant#*-} && variant=${variant%-*}
  options=$([[ $variant == P ]] && echo "--parseval 0.01" || true)
  echo "$PY -m latentops classify $COMMON $options --seed $seed --out $run > $run.log 2>&1 || { cat $run.log; exit 1; }"
done | xargs -P "$JOBS" -I{} bash -c "{}"
# The suite at its cheapest beside the dropout rates: one SNR and one PGD step (3 draws of the random ones).
$PY -m latentops robustness "${runs[@]}" --dropout 0.25,0.4 --snrs-db 20 --pgd-iterations 1 --draws 3 \
  --no-progress > "$OUT/robustness.log" 2>&1 || { cat "$OUT/robustness.log"; exit 1; }
$PY -m latentops report "${runs[@]}" --out "$OUT/parseval" > /dev/null

{
  echo "# latentops on $(hostname): make run ($((SECONDS - start)) s)"
  echo
  echo "## 1. Ops against their peers (benches/run.py --quick)"
  echo
  cat "$OUT/ops.md"
  echo
  echo "## 2. Compression: latentops compress on a digits MLP"
  echo
  tail -n +2 "$OUT/mlp-compressed/report.md"
  echo "## 3. Parseval networks under test-time dropout"
  echo
  cat "$OUT/parseval/report.md"
} > "$OUT/report.md"
step "3's report (all three in $OUT/report.md)"
cat "$OUT/parseval/report.md"
echo "done in $((SECONDS - start)) s"
