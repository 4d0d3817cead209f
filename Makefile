# make run   set up .venv, build and install latentops, run the benchmark table on this machine
# make test  set up .venv, build and install latentops with its test extras, run the tests
# make wheel build a wheel with CUDA kernels for every supported arch (see README)

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# A CPU build of torch lies on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
WHEEL_ARCHS ?= 75-real;80-real;86-real;89-real;90-real;100-real;120
SOURCES := $(shell find csrc python kernels -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.cu' -o -name '*.h' \)) CMakeLists.txt pyproject.toml

.PHONY: run test install wheel bench-gpu clean

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" scikit-build-core pybind11 numpy tqdm matplotlib safetensors scipy
	$(PY) -m pip install -q pytest pytest-benchmark scipy scikit-learn faiss-cpu triton
	touch $@

$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps .
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) benches/run.py --out runs/bench-$$(hostname).md

test: install
	$(PY) -m pytest -q

wheel: $(VENV)/.deps
	LATENTOPS_CUDA=ON LATENTOPS_CUDA_ARCHS="$(WHEEL_ARCHS)" $(PY) -m pip wheel --no-build-isolation --no-deps -w dist .

clean:
	rm -rf build dist runs $(VENV)
