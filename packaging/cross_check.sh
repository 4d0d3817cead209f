#!/usr/bin/env bash
# Compile and link latentops._C for aarch64 (Grace Hopper, Graviton) with Debian's cross compiler
# (apt-get install g++-aarch64-linux-gnu): the build every non-x86 processor gets, CPU kernels off
# (they are x86-64 AVX2 code), with this machine's Python headers, which are the same on aarch64
# for what the bindings use. Proves the sources build there; nothing runs (no aarch64 Python here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CXX=${CROSS_CXX:-aarch64-linux-gnu-g++}
command -v "$CXX" > /dev/null || { echo "cross_check.sh: no $CXX (apt-get install g++-aarch64-linux-gnu)" >&2; exit 2; }
BUILD=build/cross-aarch64
rm -rf "$BUILD"
LATENTOPS_CUDA=OFF cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER="$CXX" \
  -DPython_EXECUTABLE="$PY" -DPython_INCLUDE_DIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" > "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
grep -E "latentops: (CUDA|CPU) kernels" "$BUILD.log"
cmake --build "$BUILD" >> "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
library=$(ls "$BUILD"/_C*.so)
file "$library" | grep -q "ARM aarch64" || { file "$library"; exit 1; }
echo "cross_check: $(file -b "$library" | cut -d, -f1-2): $library"
