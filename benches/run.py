"""The benchmark table: every latentops backend against what users run today, in one process.

    python benches/run.py [--out FILE] [--quick]

On a GPU it times the issue's cases with triton.testing.do_bench (median of CUDA-event timings);
on a CPU, the median of wall-clock repeats. Each latentops row shows its speed-up over the case's
anchors measured in the same run, and on a GPU the memory it allocated beyond inputs and outputs.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import latentops


@dataclass
class Case:
    title: str
    flops: float
    anchors: list[str]  # names of rows that the latentops rows are compared with
    rows: list[tuple[str, float, float | None, str]] = field(default_factory=list)


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


def measure(case: Case, name: str, fn: Callable, device: str, *, budget_s: float = 1.0,
            note: str = "") -> None:
    """Times fn, records (name, ms, extra MiB, note); a failure is a row saying so, not a crash."""
    try:
        extra = None
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            out = fn()
            torch.cuda.synchronize()
            out_bytes = sum(t.numel() * t.element_size() for t in _tensors(out))
            extra = (torch.cuda.max_memory_allocated() - base - out_bytes) / 2**20
            del out
        ms = _time_ms(fn, device, budget_s)
    except Exception as exc:  # a peer that is missing or crashes is reported in the table
        case.rows.append((name, math.nan, None, f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
        print(f"  {name:52s} FAILED {type(exc).__name__}: {exc}", flush=True)
        return
    case.rows.append((name, ms, extra, note))
    print(f"  {name:52s} {ms:10.3f} ms", flush=True)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return [v for v in getattr(out, "__dict__", {}).values() if isinstance(v, torch.Tensor)]


def torch_mm_argmin(z, c):
    return ((c * c).sum(1)[None, :] - 2 * z @ c.T).argmin(1)


def nearest_centroid_case(n: int, k: int, d: int, device: str, quick: bool) -> Case:
    case = Case(f"nearest centroid N={n} K={k} D={d}", 2.0 * n * k * d,
                ["torch ‖c‖²−2zCᵀ+argmin fp32", "torch ‖c‖²−2zCᵀ+argmin bf16"])
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=gen).to(device)
    c = torch.randn(k, d, generator=gen).to(device)
    zb, cb = z.bfloat16(), c.bfloat16()
    budget = 0.3 if quick else 1.0
    backends = latentops._backend.available_on(torch.device(device))
    for backend in backends:
        if backend == "triton" and device == "cpu":
            continue  # the interpreter is for tests, not timings
        for label, (zz, cc), accuracy in [("fp32 exact", (z, c), "exact"), ("fp32 fast", (z, c), "fast"),
                                          ("bf16 fast", (zb, cb), "fast")]:
            if device == "cpu" and label != "fp32 exact":
                continue  # the CPU kernels compute in fp32 whatever the inputs
            measure(case, f"latentops {backend} {label}",
                    lambda zz=zz, cc=cc, a=accuracy, b=backend: latentops.nearest_centroid(zz, cc, accuracy=a, backend=b),
                    device, budget_s=budget)
    measure(case, "torch.cdist+argmin fp32", lambda: torch.cdist(z, c).argmin(1), device, budget_s=budget)
    with _tf32(False):
        measure(case, "torch ‖c‖²−2zCᵀ+argmin fp32", lambda: torch_mm_argmin(z, c), device, budget_s=budget)
    if device == "cuda":
        measure(case, "torch ‖c‖²−2zCᵀ+argmin bf16", lambda: torch_mm_argmin(zb, cb), device, budget_s=budget)
        _vector_quantize_pytorch(case, z, k, d, device, budget)
    else:
        case.anchors = ["faiss IndexFlatL2 k=1", "torch ‖c‖²−2zCᵀ+argmin fp32"]
        _faiss_search(case, z, c, budget)
    return case


class _tf32:
    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.on

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.old


def _vector_quantize_pytorch(case, z, k, d, device, budget):
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        case.rows.append(("vector-quantize-pytorch eval fwd fp32", math.nan, None, "not installed"))
        return
    vq = VectorQuantize(dim=d, codebook_size=k, decay=0.99).to(device).eval()

    def forward():
        with torch.no_grad():
            return vq(z[None])
    measure(case, "vector-quantize-pytorch eval fwd fp32", forward, device, budget_s=budget)


def _faiss_search(case, z, c, budget):
    try:
        import faiss
    except ImportError:
        case.rows.append(("faiss IndexFlatL2 k=1", math.nan, None, "not installed"))
        return
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c.numpy())
    zn = z.numpy()
    measure(case, "faiss IndexFlatL2 k=1", lambda: index.search(zn, 1), "cpu", budget_s=budget)


def soft_quantize_case(n: int, k: int, d: int, device: str, quick: bool) -> Case:
    """Forward + backward of ẑ = softmax(−½‖z − c‖²) C, as the Wu & Flierl regularizer trains."""
    case = Case(f"soft quantization N={n} K={k} D={d} fp32, forward+backward", 6.0 * 2 * n * k * d,
                ["torch cdist→softmax→matmul"])
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=gen).to(device).requires_grad_(True)
    c = torch.randn(k, d, generator=gen).to(device).requires_grad_(True)
    budget = 0.3 if quick else 1.0

    def step(forward):
        def run():
            z.grad = c.grad = None
            out = forward()
            out.backward(torch.ones_like(out))
            return z.grad, c.grad
        return run

    for backend in latentops._backend.available_on(torch.device(device)):
        if backend == "triton" and device == "cpu":
            continue  # the interpreter is for tests
        # CPU kernels are always exact; on the GPU both tensor-core settings get a row.
        for accuracy in ("exact", "fast") if device == "cuda" and backend != "torch" else ("exact",):
            label = f"latentops {backend}" + (f" {accuracy}" if device == "cuda" and backend != "torch" else "")
            measure(case, label, step(lambda b=backend, a=accuracy: latentops.soft_quantize(
                z, c, 1.0, backend=b, accuracy=a)), device, budget_s=budget)
    measure(case, "torch cdist→softmax→matmul",
            step(lambda: torch.softmax(-0.5 * torch.cdist(z, c).square(), 1) @ c), device, budget_s=budget)
    if device == "cuda":
        def sdpa():
            bias = (-0.5 * (c * c).sum(1))[None, None, None, :].expand(1, 1, n, k)
            return torch.nn.functional.scaled_dot_product_attention(z[None, None], c[None, None], c[None, None],
                                                                    attn_mask=bias, scale=1.0)[0, 0]
        measure(case, "torch SDPA with a float bias", step(sdpa), device, budget_s=budget)
    return case


def lgg_dense_smoothness(x, y1h, k):
    """The torch dense path of ../shared/anchors/gpu_anchors.py (one graph): cosine, top-k, mean
    symmetrization, L = D − A, tr(Yᵀ L Y)."""
    x = torch.nn.functional.normalize(x.flatten(1), dim=1)
    w = x @ x.t()
    w.fill_diagonal_(0)
    v, i = w.topk(k, dim=1)
    a = torch.zeros_like(w).scatter_(1, i, v)
    a = (a + a.t()) / 2
    lap = torch.diag(a.sum(1)) - a
    return torch.einsum("nc,nm,mc->", y1h, lap, y1h)


def graph_smoothness_case(layers: int, n: int, d: int, k: int, device: str, quick: bool) -> Case:
    """Label smoothness of every layer's k-NN cosine graph, forward + backward, the same graph as
    the anchor (no ReLU, mean symmetrization, unnormalized Laplacian)."""
    case = Case(f"graph smoothness {layers} layers n={n} d={d} k={k} fp32, forward+backward",
                2.0 * layers * n * n * d * 2, ["torch dense"])
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(layers, n, d, generator=gen).to(device).requires_grad_(True)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=gen), 10).float().to(device)
    budget = 0.3 if quick else 1.0

    def step(forward):
        def run():
            x.grad = None
            forward().backward()
            return x.grad
        return run

    for backend in latentops._backend.available_on(torch.device(device)):
        if backend == "triton" and device == "cpu":
            continue  # the interpreter is for tests
        measure(case, f"latentops {backend}",
                step(lambda b=backend: latentops.graph_smoothness(x, y, k=k, relu=False, symmetrize="mean",
                                                                  backend=b).sum()),
                device, budget_s=budget)
    with _tf32(False):
        measure(case, "torch dense", step(lambda: sum(lgg_dense_smoothness(x[b], y, k) for b in range(layers))),
                device, budget_s=budget)
    return case


def kmeans_case(n: int, k: int, d: int, iters: int, device: str) -> Case:
    case = Case(f"k-means N={n} K={k} D={d}, {iters} iterations (inertia over all points)",
                2.0 * n * k * d * iters, ["faiss.Kmeans"])
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(k, d, generator=gen) * 3
    x = (centers[torch.randint(0, k, (n,), generator=gen)] + torch.randn(n, d, generator=gen)).to(device)
    if not hasattr(latentops, "kmeans"):
        return case
    result = {}

    for label, sample in [("all points", None), ("256 points per centroid, as FAISS", 256)]:
        def run_latentops(sample=sample):
            result["inertia"] = latentops.kmeans(x, k, iters=iters, tol=0.0, seed=0,
                                                 max_points_per_centroid=sample).inertia
        measure(case, f"latentops.kmeans, {label}", run_latentops, device, budget_s=0.0)
        case.rows[-1] = (*case.rows[-1][:3], f"inertia {result.get('inertia', math.nan):.4g}")
    if device != "cpu":
        return case  # FAISS on the GPU machine's CPU would take minutes per run at this size
    try:
        import faiss
        xn = x.cpu().numpy()

        def run_faiss():
            km = faiss.Kmeans(d, k, niter=iters, seed=0, gpu=False)
            km.train(xn)
            result["faiss"] = km
        measure(case, "faiss.Kmeans", run_faiss, "cpu", budget_s=0.0)
        if "faiss" in result:  # like latentops' figure: over all points, not the training sample
            inertia = float(result["faiss"].index.search(xn, 1)[0].sum())
            case.rows[-1] = (*case.rows[-1][:3], f"inertia {inertia:.4g}")
    except ImportError:
        case.rows.append(("faiss.Kmeans", math.nan, None, "not installed"))
    return case


def render(cases: list[Case], device_name: str) -> str:
    lines = [f"# latentops benchmarks on {device_name}",
             "",
             f"{datetime.date.today()}, torch {torch.__version__}, latentops {latentops.__version__}, "
             f"backends {latentops.backends()}, Python {platform.python_version()}. "
             "Times are medians; 'vs X' is X's time over the row's time (higher is faster).",
             ""]
    for case in cases:
        anchors = {name: ms for name, ms, _, _ in case.rows if name in case.anchors}
        lines += [f"## {case.title}", "",
                  "| implementation | time (ms) | GFLOP/s | " + " | ".join(f"vs {a}" for a in case.anchors)
                  + " | extra memory (MiB) | note |",
                  "|---|---:|---:|" + "---:|" * len(case.anchors) + "---:|---|"]
        for name, ms, extra, note in case.rows:
            ratios = [f"{anchors[a] / ms:.2f}x" if a in anchors and ms == ms else "" for a in case.anchors]
            rate = f"{case.flops / ms / 1e6:.0f}" if ms == ms else ""
            mem = f"{extra:.1f}" if extra is not None else ""
            lines.append(f"| {name} | {ms:.3f} | {rate} | " + " | ".join(ratios) + f" | {mem} | {note} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--quick", action="store_true", help="smaller cases, shorter timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", help="run only the cases whose function name starts with this, e.g. graph")
    args = parser.parse_args(argv)
    device = args.device
    q = args.quick
    if device == "cuda":
        name = torch.cuda.get_device_name()
        plan = [(nearest_centroid_case, (262144, 4096, 64, device, q)),
                (nearest_centroid_case, (65536, 16384, 256, device, q)),
                (soft_quantize_case, (65536, 4096, 64, device, q)),
                (graph_smoothness_case, (8, 1024, 16384, 10, device, q))]
        if not q:
            plan.append((kmeans_case, (1_000_000, 20_000, 256, 25, device)))
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        plan = [(nearest_centroid_case, (16384, 1024, 64, device, q)),
                (soft_quantize_case, (16384, 1024, 64, device, q)),
                (graph_smoothness_case, (4, 256, 4096, 10, device, q))]
        if not q:
            plan.append((kmeans_case, (200_000, 256, 64, 20, device)))
    cases = [fn(*case_args) for fn, case_args in plan if not args.only or fn.__name__.startswith(args.only)]
    table = render(cases, name)
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
