#!/usr/bin/env bash
# One call on the GPU machine: build with CUDA, the benchmark table, then the test suite (CUDA tests
# included, Triton on the GPU). Logs and the table go to $OUT (or ./gpu-out).
#   bash benches/gpu_session.sh        (peers such as vector-quantize-pytorch: wheels in .wheels/)
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if ls .wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .wheels/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
start=$(date +%s)
LATENTOPS_CUDA=ON LATENTOPS_CUDA_ARCHS=${LATENTOPS_CUDA_ARCHS:-90} \
  python3 -m pip install -q --no-build-isolation --no-deps . 2>&1 | tail -20 | tee "$OUT/build.log"
echo "build: $(( $(date +%s) - start )) s" | tee -a "$OUT/build.log"
# The kernels that have never run on a GPU first: a crash there (an illegal address poisons the CUDA
# context) must not cost the benchmark table.
timeout ${FIRST_TIMEOUT:-300} python3 -m pytest -q -x -p no:cacheprovider -k "cuda-cuda" \
  tests/ops/test_soft_quantize.py tests/ops/test_graph.py 2>&1 | tee "$OUT/new-cuda-kernels.log" | tail -15
PYTHONUNBUFFERED=1 timeout ${BENCH_TIMEOUT:-900} python3 benches/run.py --out "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log" | tail -60
timeout ${TEST_TIMEOUT:-900} python3 -m pytest -q -p no:cacheprovider ${TESTS:-tests} 2>&1 | tee "$OUT/tests.log" | tail -30
