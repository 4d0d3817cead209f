#!/usr/bin/env bash
# What a user gets from the published artifacts, checked on every CI run (make test): the sdist and
# the CPU wheel built as for publishing (packaging/build_wheels.sh, with its auditwheel checks), each
# installed in a clean virtualenv outside the tree and smoke-tested (packaging/smoke.py). The sdist
# is installed the way pip does it for a user (isolated build) with LATENTOPS_CPU_KERNELS=OFF: the
# build that aarch64 and every other processor get, so that path is compiled and imported here too.
# The pure-Python wheel is checked last. About 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-.venv/bin/python}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
DIST=$ROOT/build/check-install
rm -rf "$DIST"
PY=$PY bash packaging/build_wheels.sh --dist "$DIST" sdist cpu pure

TMP=$(mktemp -d /tmp/latentops-install.XXXXXX) # outside the tree: nothing of the sources is importable
trap 'rm -rf "$TMP"' EXIT
python3 -m venv "$TMP/venv"
VPY=$TMP/venv/bin/python
pip_install() { "$VPY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip_install "$TORCH_SPEC"

smoke() { # ARTIFACT SMOKE-OPTIONS...: install ARTIFACT alone into the clean venv and smoke-test it
  local artifact=$1
  shift
  echo "== $(basename "$artifact")"
  "$VPY" -m pip uninstall -q -y latentops 2>/dev/null || true
  pip_install "$artifact"
  (cd "$TMP" && "$VPY" "$ROOT/packaging/smoke.py" "$@")
}
smoke "$(ls "$DIST"/latentops-*cpu-*.whl)" --expect-cpu-kernels yes --expect-cuda no
LATENTOPS_CUDA=OFF LATENTOPS_CPU_KERNELS=OFF smoke "$(ls "$DIST"/latentops-*.tar.gz)" \
  --expect-cpu-kernels no --expect-cuda no
smoke "$(ls "$DIST"/latentops-*-py3-none-any.whl)" --expect-cpu-kernels no --expect-cuda no
echo "check_install: the sdist and the cpu and pure wheels install and pass the smoke test"
