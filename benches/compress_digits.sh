#!/usr/bin/env bash
# The compression headline (issue 14) on this CPU: two digits classifiers, an MLP (2 × 1024 hidden
# units) and the small PreAct conv net at width 128, each compressed by `latentops compress` with
# every quantizer (CWS, PWS, UQ, ECSQ) and SEEDS seeds of the fine-tuning and quantization; then
# the report over seeds (medians, ranges, McNemar's test of each compressed model against its
# source on the same test images); then a grid of fractions pruned × codebook sizes on the MLP,
# every quantizer, plotted as accuracy against ψ.
#
#   bash benches/compress_digits.sh      (OUT=runs/compress-digits SEEDS=3 CONV_SEEDS=2 JOBS=2)
#
# About 50 minutes here. Finished runs are kept: running it again continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/compress-digits}
SEEDS=${SEEDS:-3}
CONV_SEEDS=${CONV_SEEDS:-2}  # a conv compression takes ~8 minutes here, an MLP one ~1.5
JOBS=${JOBS:-2}
QUANTIZERS=(cws pws uq ecsq)
COMMON="--threads 1 --no-progress --resume"
declare -A SOURCE=(
  [mlp]="--dataset digits --arch mlp --width 1024 --lr 0.02 --weight-decay 0 --steps 3000"
  [conv]="--dataset digits --arch preact-small --width 128 --lr 0.05 --steps 600"
)
# 99% of the big layers pruned; the first layer and the classifier head, small and sensitive, less.
declare -A COMPRESS=(
  [mlp]="--prune 0.99 --per-layer hidden.0=0.95,head=0.9 --k 32 --steps 1000 --lr 0.02"
  [conv]="--prune 0.99 --per-layer conv1=0.5,linear=0.9 --k 32 --steps 600 --lr 0.02"
)

mkdir -p "$OUT"
for model in mlp conv; do
  echo "$PY -m latentops classify ${SOURCE[$model]} $COMMON --out $OUT/$model > $OUT/$model.log 2>&1 || { tail -20 $OUT/$model.log; exit 1; }"
done | xargs -P "$JOBS" -I{} bash -c "{}"

runs=()
declare -A MODEL_SEEDS=([mlp]=$SEEDS [conv]=$CONV_SEEDS)
for model in mlp conv; do
  for quantizer in "${QUANTIZERS[@]}"; do
    for seed in $(seq 0 $((MODEL_SEEDS[$model] - 1))); do runs+=("$OUT/$model-$quantizer-$seed"); done
  done
done
for run in "${runs[@]}"; do  # (a pipeline's loop runs in a subshell: runs is filled above)
  name=$(basename "$run") && model=${name%%-*} && seed=${name##*-} && quantizer=${name#*-} && quantizer=${quantizer%-*}
  if [[ ! -f $run/metrics.json ]]; then
    echo "$PY -m latentops compress $OUT/$model ${COMPRESS[$model]} --quantizer $quantizer --seed $seed $COMMON --out $run > $run.log 2>&1 || { tail -20 $run.log; exit 1; }"
  fi
done | xargs -P "$JOBS" -I{} bash -c "{}"
$PY -m latentops report "${runs[@]}" --out "$OUT"

# The grid, one process per pair of quantizers (each prunes for itself), then one plot of all four.
GRID="--grid-prune 0.9,0.95,0.98,0.99 --grid-k 2,32,128,1024 --steps 200 --lr 0.02"
for pair in cws,pws uq,ecsq; do
  echo "$PY -m latentops compress $OUT/mlp --grid $GRID --grid-quantizers $pair $COMMON --out $OUT/grid-$pair > $OUT/grid-$pair.log 2>&1 || { tail -20 $OUT/grid-$pair.log; exit 1; }"
done | xargs -P "$JOBS" -I{} bash -c "{}"
$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

from latentops.pipelines.compression.report import grid_table, plot_grid

out = Path(sys.argv[1])
points = [p for pair in ("cws,pws", "uq,ecsq") for p in json.loads((out / f"grid-{pair}" / "grid.json").read_text())]
plot_grid(points, out / "grid.png", "mlp (2 × 1024) on digits: accuracy against ψ")
(out / "grid.md").write_text(grid_table(points))
print(grid_table(points))
EOF
