#!/usr/bin/env bash
# The GPU kit: every GPU verdict and figure in one call, planned at ≤ 560 s on an H200 so that the
# call (limit 600 s) and a machine start fit in a 15-minute lease. Phases, each under its own timeout, each leaving its
# output in $WORK and the assembled results in $OUT as soon as it ends:
#   record → build (sm_90a) → GPU tests (the families at once) → benchmark per family →
#   pipeline throughput → profile → sanitizers
# (the sanitizers last: the slowest and least predictable, and a crash there costs no figure).
#
#   bash benches/gpu_check.sh            on the GPU machine; what comes back is $OUT/results.md
#                                        (commit it as benches/results/<gpu>-<date>.md) and
#                                        $OUT/phases.tgz (every phase's log)
#   bash benches/gpu_check.sh --dry-run  anywhere: the plan with each phase's command and budget,
#                                        then the results assembled from sample phase outputs
#
# Peers the GPU image lacks (vector-quantize-pytorch and its dependencies): copy their wheels into
# .wheels/ (ignored; name it in the device call's `carry`), e.g. `cp ../shared/wheels/*.whl .wheels/`;
# they are installed from there. GPU_CHECK_COMMIT names the commit in the record (the working tree
# that travels has no .git). GPU_CHECK_PHASES="build tests ..." runs only the phases named (a rerun;
# PYTEST_ADDOPTS="-k ..." narrows the tests). A second call on a warm machine reuses build/ and the
# Triton cache.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash benches/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
WORK=${GPU_CHECK_WORK:-$ROOT/build/gpu-check}
PY=${PYTHON:-python3}
export WORK PY
PLAN_LIMIT=560  # seconds: the lease's 15 minutes less a machine start (minutes) and a margin
export TRITON_CACHE_DIR=$ROOT/build/triton-cache PYTHONUNBUFFERED=1

declare -A TESTS=(
  [nearest_centroid]="tests/ops/test_nearest_centroid.py tests/test_kmeans.py tests/nn/test_vector_quantizer.py"
  [soft_quantize]="tests/ops/test_soft_quantize.py tests/nn/test_soft_vector_quantizer.py"
  [graph]="tests/ops/test_graph.py tests/nn/test_graph_losses.py"
  [compressed_linear]="tests/ops/test_compressed_linear.py tests/ops/test_compressed_linear_triton.py tests/ops/test_compressed_linear_native.py tests/nn/test_compressed_modules.py"
)
BENCH_CASES=(ceilings nearest_centroid soft_quantize graph laplacian_regularizer compressed_linear kmeans)

# Training throughput of the autoencoder pipeline, a short run each: latentops' kernels (--backend ops,
# the automatic choice; softvq once more with the CUDA kernel preferred) against the pure-torch reference.
PIPELINE_RUNS=("vqvae ops" "vqvae torch" "softvq ops" "softvq torch" "softvq ops cuda")
PIPELINE_STEPS=300

# name, budget (s), command: the whole plan, in order.
PLAN=()
step() { PLAN+=("$1|$2|$3"); }
step record 20 "record"
step build 45 "build"
step tests 150 "tests 140"
declare -A BENCH_BUDGET=([ceilings]=15 [nearest_centroid]=45 [soft_quantize]=40 [graph]=30 [laplacian_regularizer]=15 [compressed_linear]=30 [kmeans]=30)
for case in "${BENCH_CASES[@]}"; do
  step "bench-$case" "${BENCH_BUDGET[$case]}" "cd benches && $PY run.py --only $case --rows $WORK/rows.jsonl \"\${SKIPS[@]}\" > $WORK/bench-$case.log 2>&1"
done
step pipeline 80 "pipeline > $WORK/pipeline.log 2>&1"
step profile 20 "cd benches && $PY gpu_check.py profile > $WORK/profile.md 2> $WORK/profile.log"
step memcheck 20 "compute-sanitizer --tool memcheck --error-exitcode 1 $PY benches/gpu_check.py sanitize > $WORK/memcheck.log 2>&1"
step racecheck 20 "compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 1 $PY benches/gpu_check.py sanitize > $WORK/racecheck.log 2>&1"

record() {
  {
    echo "commit: ${GPU_CHECK_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), host cores: $(nproc)"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv
    nvcc --version | tail -n 2
    $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    $PY -c "import vector_quantize_pytorch as v; print('vector-quantize-pytorch', v.__file__)" 2>&1 | tail -n 1
  } > "$WORK/record.txt" 2>&1
}

build() {
  # sm_90a only (the H200), all cores, every kernel's ptxas report in the log. A failed build is
  # loud (the log's end on stdout) and falls back to a build without CUDA, so the Triton kernels
  # still get their verdicts. The copy that travels has no .git, and the GPU image may lack the
  # version provider (setuptools-scm): then this copy's pyproject.toml gets a fixed version.
  if ! $PY -c "import setuptools_scm" 2> /dev/null; then
    sed -i -e 's/^dynamic = \["version"\]/version = "0+unknown"/' -e '/^metadata.version.provider/d' pyproject.toml
  fi
  if LATENTOPS_CUDA=ON LATENTOPS_CUDA_ARCHS=90a CMAKE_ARGS="-DCMAKE_CUDA_FLAGS=-Xptxas=-v" \
      CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) SKBUILD_BUILD_VERBOSE=true \
      $PY -m pip install -v --no-build-isolation --no-deps . > "$WORK/build.log" 2>&1; then
    (cd / && cuobjdump --dump-sass "$($PY -c 'import latentops._C as m; print(m.__file__)')") > "$WORK/sass.txt" 2>&1
    return 0
  fi
  touch "$WORK/build.failed"
  echo "!!!!! CUDA BUILD FAILED: the end of $WORK/build.log (all of it is in phases.tgz) !!!!!"
  tail -n 80 "$WORK/build.log"
  LATENTOPS_CUDA=OFF $PY -m pip install --no-build-isolation --no-deps . > "$WORK/build-without-cuda.log" 2>&1
  return 1
}

tests() {
  # The four families at once, each in its own pytest run of 3 workers under its own timeout ($1 s):
  # their Triton compiles are CPU-bound (up to 20 s a test) and the host has 16 cores, and a crash
  # or hang in one costs the others nothing. Each family's exit status goes to tests-<family>.status (none: killed).
  local family
  for family in "${!TESTS[@]}"; do
    (
      timeout -k 5 "$1" $PY -m pytest -v -n 3 -p no:cacheprovider -m cuda --timeout 30 \
        --junitxml "$WORK/junit-$family.xml" ${TESTS[$family]} > "$WORK/tests-$family.log" 2>&1
      echo $? > "$WORK/tests-$family.status"
    ) &
  done
  wait
}

pipeline() {
  # One after another (their throughput is the figure); the first 100 steps are warm-up, which
  # the runner leaves out of images/s.
  local run model backend prefer
  for run in "${PIPELINE_RUNS[@]}"; do
    read -r model backend prefer <<< "$run"
    echo "== $run"
    LATENTOPS_BACKEND=$prefer $PY -m latentops train --model "$model" --dataset lines --device cuda \
      --backend "$backend" --steps $PIPELINE_STEPS --eval-every $PIPELINE_STEPS --log-every 100 \
      --no-downstream --no-progress --out "$WORK/pipeline/${run// /-}"
  done
}

pack() {
  # The results so far, where the device call returns them; each write replaces the last whole.
  $PY benches/gpu_check.py assemble "$WORK" "$OUT/results.md"
  # (without the pipeline runs' checkpoints: they took the archive past what a device call returns)
  tar czf "$OUT/phases.tgz.tmp" --exclude='checkpoint-*' --exclude=latest -C "$WORK" . && mv "$OUT/phases.tgz.tmp" "$OUT/phases.tgz"
}

total=0
echo "GPU check plan (each phase under its own timeout; budget in seconds):"
for entry in "${PLAN[@]}"; do
  IFS='|' read -r name budget command <<< "$entry"
  total=$((total + budget))
  printf '  %-26s %4d  %s\n' "$name" "$budget" "$command"
done
echo "plan total: $total s (limit $PLAN_LIMIT s)"
if (( total > PLAN_LIMIT )); then
  echo "the plan is over its limit" >&2
  exit 1
fi

if (( DRY )); then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  mkdir -p "$OUT"
  $PY benches/gpu_check.py sample "$WORK" && pack || exit 1
  echo "dry run: assembled $OUT/results.md from sample outputs"
  exit 0
fi

rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
if ls .wheels/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/gpu-check-site .wheels/*.whl && export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
SKIPS=()
for entry in "${PLAN[@]}"; do
  IFS='|' read -r name budget command <<< "$entry"
  if [[ $name == bench-ceilings ]]; then  # the tests are done: kernels that failed them are not timed
    mapfile -t SKIPS < <(cd benches && $PY gpu_check.py skips "$WORK")
  fi
  if [[ -n ${GPU_CHECK_PHASES:-} && " $GPU_CHECK_PHASES " != *" $name "* ]]; then
    continue
  fi
  echo "== $name (budget $budget s)"
  start=$(date +%s)
  # Each phase in a fresh bash under timeout: the functions and the skip list travel as text.
  timeout -k 10 "$budget" bash -c "$(declare -f record build tests pipeline); $(declare -p SKIPS TESTS PIPELINE_RUNS PIPELINE_STEPS); $command"
  status=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$(($(date +%s) - start))" "$status" >> "$WORK/phases.tsv"
  pack
done
$PY benches/gpu_check.py verdicts "$WORK"
echo "results: $OUT/results.md, logs: $OUT/phases.tgz"
