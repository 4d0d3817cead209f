"""Shared test setup. Without a GPU the Triton kernels run under the Triton interpreter, which must be
switched on before triton is first imported (latentops imports it)."""

import os
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import latentops

# Fuzz tests (hypothesis) take their example counts from a profile: "ci" (the default) keeps the
# whole suite within CI's time; LATENTOPS_FUZZ=deep runs 25x as many, before resolving an issue
# that touches an op. A test sets max_examples only through fuzz_examples(), so both profiles apply.
FUZZ_PROFILE = os.environ.get("LATENTOPS_FUZZ", "ci")
FUZZ_SCALE = {"ci": 1, "deep": 25}
if FUZZ_PROFILE not in FUZZ_SCALE:
    raise ValueError(f"LATENTOPS_FUZZ must be one of {sorted(FUZZ_SCALE)}, got {FUZZ_PROFILE!r}")
settings.register_profile(
    FUZZ_PROFILE,
    deadline=None,  # the Triton interpreter and a loaded CI machine make timings meaningless
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,  # a failure prints the line that replays it
)
settings.load_profile(FUZZ_PROFILE)


def fuzz_examples(ci: int) -> int:
    """max_examples for a fuzz test that runs `ci` examples in the CI profile."""
    return ci * FUZZ_SCALE[FUZZ_PROFILE]


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


# Tests of tiny models and of the codecs' many small tensor ops (folders and files under tests/).
# Splitting their small ops over threads costs more than it saves, and on a loaded 2-core machine
# each parallel op waits for descheduled workers (2-3x slower there; tests/codecs: 50 s vs 18 s).
SINGLE_THREADED = ("codecs", "data", "models", "pipelines", "test_cli.py")


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
