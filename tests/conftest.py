"""Shared test setup. Without a GPU the Triton kernels run under the Triton interpreter, which must be
switched on before triton is first imported (latentops imports it)."""

import os
import time
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import latentops

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def backend_params(device: str) -> list:
    """pytest params of every backend for `device`; a backend that did not load here is a skip
    (CUDA backends carry the cuda mark so `-m cuda` selects them on the GPU machine)."""
    present = latentops._backend.available_on(torch.device(device)) if device == "cpu" or CUDA else []
    wanted = ("cuda", "triton", "torch") if device == "cuda" else ("cpu", "triton", "torch")
    marks = [pytest.mark.cuda] if device == "cuda" else []
    reason = "needs a CUDA GPU" if device == "cuda" and not CUDA else None
    return [
        pytest.param(
            name,
            id=f"{device}-{name}",
            marks=marks
            + (
                []
                if name in present
                else [pytest.mark.skip(reason=reason or f"{name} backend not available on {device}")]
            ),
        )
        for name in wanted
    ]


@pytest.fixture
def gen():
    """A fresh generator per test: new random inputs each run, reproducible from the printed seed."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


# Tests of tiny models (folders and files under tests/). Splitting their small ops over threads
# costs more than it saves, and on a loaded 2-core machine each parallel op waits for descheduled
# workers (2-3x slower there).
SINGLE_THREADED = ("data", "models", "pipelines", "test_cli.py")


@pytest.fixture(autouse=True)
def _single_threaded_tiny_models(request):
    if request.path.relative_to(Path(__file__).parent).parts[0] not in SINGLE_THREADED:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_processes(worker, args: tuple, nprocs: int, timeout_s: float) -> None:
    """Runs worker(rank, *args) in `nprocs` spawned processes; fails the test (and kills them) if
    they are not done in `timeout_s` seconds, so a deadlocked collective cannot hang the suite."""
    import torch.multiprocessing as mp

    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("distributed workers did not finish in time")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
