"""The GPU kit's probes that need a GPU (run through benches/gpu_check.py).

sanitize(): every CUDA kernel once, forward and backward, on tiny odd shapes, for
compute-sanitizer's memcheck and racecheck (small enough that the sanitized process ends in
seconds). profile(): torch.profiler's per-kernel CUDA time of the nearest-centroid pipeline (both
accuracies) and of soft quantization's kernels, and the share of rows exact mode re-decides.
"""

from __future__ import annotations

import torch

import latentops
from latentops import testing
from latentops.codecs import encode_hcsr
from latentops.kernel_enums import Accuracy
from latentops.native import library
from latentops.native.nearest_centroid import _launch

N, K, D = 37, 13, 19  # odd, and not multiples of any tile


def sanitize() -> int:
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(N, D, device="cuda", generator=gen)
    c = torch.randn(K, D, device="cuda", generator=gen)
    for dtype in (torch.float32, torch.bfloat16):
        for accuracy in ("exact", "fast"):
            latentops.nearest_centroid(z.to(dtype), c.to(dtype), accuracy=accuracy, backend="cuda")
    zq, cq = z.clone().requires_grad_(True), c.clone().requires_grad_(True)
    latentops.soft_quantize(zq, cq, 0.7, backend="cuda").sum().backward()
    x = torch.randn(2, N, D, device="cuda", generator=gen, requires_grad=True)
    labels = torch.randint(0, 3, (N,), device="cuda", generator=gen)
    for k in (None, 5):  # the dense graph and the k-NN one (its sparse backward)
        latentops.graph_smoothness(x, labels, k=k, num_classes=3, backend="cuda").sum().backward()
    codes, mask, codebook = testing.compressed_weight_sample(
        N, 3 * D, K, 0.7, generator=torch.Generator().manual_seed(0)
    )
    weight = encode_hcsr(codes, mask, codebook)
    latentops.decompress(weight, device="cuda", backend="cuda")
    xc = torch.randn(3, 3 * D, device="cuda", generator=gen, requires_grad=True)
    latentops.compressed_linear(xc, weight, backend="cuda").sum().backward()
    torch.cuda.synchronize()
    print("sanitize: every CUDA kernel ran")
    return 0


def _kernel_table(prof, title: str, rows: int = 8) -> str:
    averages = sorted(
        (e for e in prof.key_averages() if e.device_time_total > 0), key=lambda e: e.device_time_total, reverse=True
    )
    lines = [f"**{title}**", "", "| kernel | calls | CUDA time per call (µs) | share |", "|---|---:|---:|---:|"]
    total = sum(e.device_time_total for e in averages) or 1.0
    for event in averages[:rows]:
        per_call = event.device_time_total / max(event.count, 1)
        lines.append(f"| {event.key[:70]} | {event.count} | {per_call:.1f} | {event.device_time_total / total:.0%} |")
    return "\n".join(lines) + "\n"


def _profiled(fn, repeats: int = 5):
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    return prof


def _redecided_share(z: torch.Tensor, c: torch.Tensor) -> float:
    """Rows exact mode re-decides: the int at byte 4 of the workspace (the layout's header in
    csrc/cuda/nearest_centroid.cu: cmax bits, then the flagged-row count)."""
    (n, d), k = z.shape, c.shape[0]
    size = library.nearest_centroid_cuda_workspace_bytes(n=n, k=k, d=d, accuracy=Accuracy.EXACT)
    workspace = torch.zeros(size, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    _launch(library.nearest_centroid_cuda, z, c, "exact", workspace=workspace.data_ptr(), stream=stream)
    torch.cuda.synchronize()
    return int(workspace[4:8].view(torch.int32)) / n


def profile() -> int:
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(262144, 64, device="cuda", generator=gen)
    c = torch.randn(4096, 64, device="cuda", generator=gen)
    parts = []
    for backend in ("cuda", "triton"):
        for accuracy in ("exact", "fast"):
            prof = _profiled(lambda b=backend, a=accuracy: latentops.nearest_centroid(z, c, accuracy=a, backend=b))
            parts.append(_kernel_table(prof, f"nearest centroid N=262144 K=4096 D=64 fp32, {backend} {accuracy}"))
    try:
        parts.append(f"Exact mode (cuda) re-decided {_redecided_share(z, c):.1%} of the rows of this Gaussian data.\n")
    except Exception as exc:  # the probe reads a private layout: say so rather than stop the profile
        parts.append(f"Re-decided share: not read ({type(exc).__name__}: {exc}).\n")
    zq = torch.randn(65536, 64, device="cuda", generator=gen, requires_grad=True)
    cq = torch.randn(4096, 64, device="cuda", generator=gen, requires_grad=True)
    for backend in ("cuda", "triton"):
        prof = _profiled(lambda b=backend: latentops.soft_quantize(zq, cq, 1.0, backend=b).sum().backward())
        parts.append(_kernel_table(prof, f"soft quantization N=65536 K=4096 D=64 fp32 forward+backward, {backend}"))
    print("\n".join(parts))
    return 0
