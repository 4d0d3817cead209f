"""The ceilings every GPU row is read against, measured in the same run: cuBLAS matrix products
(bf16, and fp32 with and without tf32) and a device-to-device copy."""

from __future__ import annotations

import torch

from harness import Case, check_close, measure, tf32


def ceilings_case(device: str, quick: bool) -> Case:
    size = 4096 if quick else 8192
    case = Case(f"ceilings: cuBLAS {size}³ products, a {size * size * 16 // 2**20} MiB copy", 2.0 * size**3, [])
    print(case.title, flush=True)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=gen)  # random data: zeros run faster
    b = torch.randn(size, size, device=device, generator=gen)
    # The product's reference on a slice of rows, in float64.
    rows = slice(0, 64)
    expected = a[rows].double() @ b.double()

    def product_check(tolerance):
        return lambda out: check_close("product", out[rows], expected, tolerance)

    budget = 0.3 if quick else 1.0
    a16, b16 = a.bfloat16(), b.bfloat16()
    measure(case, "cuBLAS bf16 matmul", lambda: a16 @ b16, device, check=product_check(1e-2), budget_s=budget)
    with tf32(True):
        measure(case, "cuBLAS fp32 matmul, tf32", lambda: a @ b, device, check=product_check(2e-3), budget_s=budget)
    with tf32(False):
        measure(case, "cuBLAS fp32 matmul", lambda: a @ b, device, check=product_check(1e-5), budget_s=budget)
    source = torch.cat([a, b]).reshape(-1)
    target = torch.empty_like(source)
    gigabytes = 2 * source.numel() * source.element_size() / 1e9  # read + write

    def copy():
        target.copy_(source)
        return target

    measure(
        case,
        "device copy",
        copy,
        device,
        check=lambda out: check_close("copy", out[:4096], source[:4096], 0.0),
        describe=lambda _, ms: f"{gigabytes / ms * 1e3:.0f} GB/s (bytes read + written); GFLOP/s column n/a",
    )
    return case
