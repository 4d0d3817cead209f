"""The benchmark harness: a Case collects timed rows, each first checked against the reference
(a fast wrong answer is a row that says so, never a time), and renders as a markdown table with
every row's speed-up over the case's anchors, all measured in the same process."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import latentops


@dataclass
class Case:
    title: str
    flops: float
    anchors: list[str]  # names of rows that the others are compared with
    rows: list[tuple[str, float, float | None, str]] = field(default_factory=list)


def timed_backends(device: str) -> list[str]:
    """The latentops backends worth timing on `device` (the Triton interpreter is for tests)."""
    return [b for b in latentops._backend.available_on(torch.device(device)) if not (b == "triton" and device == "cpu")]


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
) -> None:
    """Runs fn once and checks its output (check(out) raises AssertionError if it is wrong), then
    times it; records (name, ms, extra MiB on a GPU, note). A failure is a row saying so."""
    try:
        extra = None
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
            check(out)
        del out
        ms = _time_ms(fn, device, budget_s)
    except AssertionError as exc:
        case.rows.append((name, math.nan, None, f"WRONG RESULT: {str(exc)[:100]}"))
        print(f"  {name:52s} WRONG RESULT {exc}", flush=True)
        return
    except Exception as exc:  # a peer that is missing or crashes is reported in the table
        case.rows.append((name, math.nan, None, f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
        print(f"  {name:52s} FAILED {type(exc).__name__}: {exc}", flush=True)
        return
    case.rows.append((name, ms, extra, note))
    print(f"  {name:52s} {ms:10.3f} ms", flush=True)


def relative_error(mine: torch.Tensor, reference: torch.Tensor) -> float:
    mine, reference = mine.double().to(reference.device), reference.double()
    return ((mine - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def check_close(name: str, mine: torch.Tensor, reference: torch.Tensor, tolerance: float) -> None:
    error = relative_error(mine, reference)
    assert error <= tolerance, f"{name} relative error {error:.2e} > {tolerance:.0e}"


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
    lines = [
        f"# latentops benchmarks on {device_name}",
        "",
        f"{datetime.date.today()}, torch {torch.__version__}, latentops {latentops.__version__}, "
        f"backends {latentops.backends()}, Python {platform.python_version()}. "
        "Times are medians; 'vs X' is X's time over the row's time (higher is faster). Every row's "
        "output was checked against the float64 reference before it was timed.",
        "",
    ]
    for case in cases:
        anchors = {name: ms for name, ms, _, _ in case.rows if name in case.anchors}
        header = [
            "implementation",
            "time (ms)",
            *(["GFLOP/s"] if case.flops else []),
            *(f"vs {a}" for a in case.anchors),
            "extra memory (MiB)",
            "note",
        ]
        lines += [
            f"## {case.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 2) + "---|",
        ]
        for name, ms, extra, note in case.rows:
            measured = ms == ms
            cells = [name, f"{ms:.3f}" if measured else "–"]
            if case.flops:
                cells.append(f"{case.flops / ms / 1e6:.0f}" if measured else "")
            cells += [f"{anchors[a] / ms:.2f}x" if a in anchors and measured else "" for a in case.anchors]
            cells += [f"{extra:.1f}" if extra is not None else "", note]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
