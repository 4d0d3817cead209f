"""The benchmark harness: measure() checks each timed call against the reference first (a fast
wrong answer is a row that says so, never a time; the check's error is shown on the row) and adds
it to a Case (table.py: the rows, their JSON-lines log and the markdown), all measured in the same
process."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch

import latentops
from table import Case, Row, render_cases

# Set by run.py: the (family, backend) pairs not to time (the GPU kit skips kernels that failed
# their tests), with the reason.
SKIP: dict[tuple[str, str], str] = {}


def timed_backends(device: str, case: Case | None = None) -> list[str]:
    """The latentops backends worth timing on `device` (the Triton interpreter is for tests); a
    backend skipped for `case`'s family gets a row saying why instead."""
    backends = [
        b for b in latentops._backend.available_on(torch.device(device)) if not (b == "triton" and device == "cpu")
    ]
    if case is None:
        return backends
    for backend in [b for b in backends if (case.family, b) in SKIP]:
        case.add(Row(f"latentops {backend}", math.nan, None, None, f"skipped: {SKIP[case.family, backend]}"))
    return [b for b in backends if (case.family, b) not in SKIP]


def _time_ms(fn: Callable, device: str, budget_s: float) -> float:
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=max(100, int(budget_s * 1000)), return_mode="median")
    fn()
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return [v for v in getattr(out, "__dict__", {}).values() if isinstance(v, torch.Tensor)]


def measure(
    case: Case,
    name: str,
    fn: Callable,
    device: str,
    *,
    check: Callable | None = None,
    budget_s: float = 1.0,
    note: str = "",
    describe: Callable | None = None,
) -> None:
    """Runs fn once and checks its output (check(out) returns its error against the reference and
    raises AssertionError if it is wrong), then times it; adds a Row, whose note is `note` or
    describe(out, ms). A failure is a row saying so."""
    error = extra = None
    try:
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
            out_bytes = sum(t.numel() * t.element_size() for t in _tensors(out))
            extra = (torch.cuda.max_memory_allocated() - base - out_bytes) / 2**20
        if check is not None:
            error = check(out)
        ms = _time_ms(fn, device, budget_s)
        if describe is not None:
            note = describe(out, ms)
        del out
    except AssertionError as exc:
        case.add(Row(name, math.nan, extra, error, f"WRONG RESULT: {str(exc)[:100]}"))
        print(f"  {name:52s} WRONG RESULT {exc}", flush=True)
        return
    except Exception as exc:  # a peer that is missing or crashes is reported in the table
        case.add(Row(name, math.nan, extra, error, f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
        print(f"  {name:52s} FAILED {type(exc).__name__}: {exc}", flush=True)
        return
    case.add(Row(name, ms, extra, error, note))
    print(f"  {name:52s} {ms:10.3f} ms", flush=True)


def measure_forward_backward(
    case: Case,
    name: str,
    forward: Callable,
    inputs: list[torch.Tensor],
    device: str,
    *,
    check_forward: Callable,
    check_grads: Callable,
    budget_s: float,
) -> None:
    """Two rows: `name` forward (as training runs it: saving what backward needs) and backward
    alone (gradients of the summed output with respect to `inputs`, from one retained graph)."""
    measure(case, f"{name} fwd", forward, device, check=check_forward, budget_s=budget_s)
    try:
        out = forward()
    except Exception:
        return  # the forward row already says why
    seed = torch.ones_like(out)
    measure(
        case,
        f"{name} bwd",
        lambda: torch.autograd.grad(out, inputs, seed, retain_graph=True),
        device,
        check=check_grads,
        budget_s=budget_s,
    )


def relative_error(mine: torch.Tensor, reference: torch.Tensor) -> float:
    mine, reference = mine.double().to(reference.device), reference.double()
    return ((mine - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def check_close(name: str, mine: torch.Tensor, reference: torch.Tensor, tolerance: float) -> float:
    """The relative error ‖mine − reference‖ / ‖reference‖, asserted ≤ tolerance (NaN fails)."""
    error = relative_error(mine, reference)
    assert error <= tolerance, f"{name} relative error {error:.2e} > {tolerance:.0e}"
    return error


class tf32:
    """torch.backends.cuda.matmul.allow_tf32 set to `on` inside the block (the anchors run in fp32)."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.on

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.old


def render(cases: list[Case], device_name: str) -> str:
    return render_cases(
        cases,
        f"# latentops benchmarks on {device_name}",
        f"{datetime.date.today()}, torch {torch.__version__}, latentops {latentops.__version__}, "
        f"backends {latentops.backends()}, Python {platform.python_version()}.",
    )
