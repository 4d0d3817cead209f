"""The benchmark harness: a Case collects timed rows, each first checked against the reference
(a fast wrong answer is a row that says so, never a time; the check's error is shown on the row),
and renders as a markdown table with every row's speed-up over the case's anchors, all measured in
the same process. With ROWS set (run.py --rows), every row is also appended to that JSON-lines
file as soon as it is measured, so a run killed midway keeps what it measured."""

from __future__ import annotations

import datetime
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import latentops


@dataclass
class Row:
    name: str
    ms: float  # NaN: not timed (failed, wrong or skipped: see note)
    extra_mib: float | None  # peak device memory beyond the inputs and outputs (GPU only)
    error: float | None  # what the check measured against the float64 reference
    note: str = ""


@dataclass
class Case:
    title: str
    flops: float
    anchors: list[str]  # names of rows that the others are compared with
    rows: list[Row] = field(default_factory=list)
    family: str = ""  # the op family whose backends it times ("" for none)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if ROWS is not None:
            with ROWS.open("a") as log:
                log.write(json.dumps({"case": self.title, "flops": self.flops, **row.__dict__}) + "\n")


# Set by run.py: the JSON-lines file every row is appended to, and the (family, backend) pairs not
# to time (the GPU kit skips kernels that failed their tests, with the reason).
ROWS: Path | None = None
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
    describe(out). A failure is a row saying so."""
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
        if describe is not None:
            note = describe(out)
        del out
        ms = _time_ms(fn, device, budget_s)
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


def _stage(name: str) -> str | None:
    """ "fwd" or "bwd" for a row measured by measure_forward_backward: compared with anchors of the same stage."""
    stage = name.rsplit(" ", 1)[-1]
    return stage if stage in ("fwd", "bwd") else None


def render(cases: list[Case], device_name: str) -> str:
    lines = [
        f"# latentops benchmarks on {device_name}",
        "",
        f"{datetime.date.today()}, torch {torch.__version__}, latentops {latentops.__version__}, "
        f"backends {latentops.backends()}, Python {platform.python_version()}. "
        "Times are medians; 'vs X' is X's time over the row's time (higher is faster). Every row's "
        "output was checked against the float64 reference before it was timed; 'error' is what that "
        "check measured (relative error, or for indices the worst chosen distance's excess over the "
        "nearest, relative to ‖z‖² + max‖c‖²).",
        "",
    ]
    for case in cases:
        anchors = {row.name: row.ms for row in case.rows if row.name in case.anchors}
        header = [
            "implementation",
            "time (ms)",
            *(["GFLOP/s"] if case.flops else []),
            *(f"vs {a}" for a in case.anchors),
            "error",
            "extra memory (MiB)",
            "note",
        ]
        lines += [
            f"## {case.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 2) + "---|",
        ]
        for row in case.rows:
            ms = row.ms
            measured = ms == ms
            cells = [row.name, f"{ms:.3f}" if measured else "–"]
            if case.flops:
                cells.append(f"{case.flops / ms / 1e6:.0f}" if measured else "")
            cells += [
                f"{anchors[a] / ms:.2f}x" if a in anchors and measured and _stage(a) in (None, _stage(row.name)) else ""
                for a in case.anchors
            ]
            cells += [
                f"{row.error:.1e}" if row.error is not None else "",
                f"{row.extra_mib:.1f}" if row.extra_mib is not None else "",
                row.note,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
