"""Soft quantization, forward + backward as the Wu & Flierl regularizer trains: latentops'
backends against torch's cdist → softmax → matmul (and SDPA with a float bias on the GPU), every
row's gradients checked against the float64 reference."""

from __future__ import annotations

import torch

import latentops
from harness import Case, check_close, measure, timed_backends
from latentops import testing
from latentops.kernel_enums import PrecisionLayout
from latentops.reference import soft_quantize as reference


def reference_gradients(z: torch.Tensor, c: torch.Tensor, s: float):
    """(dL/dz, dL/dc) of L = Σ ẑ in float64 (the reference's chunked forward and backward)."""
    z64, c64 = z.detach().double(), c.detach().double()
    s64 = torch.full((1,), s, dtype=torch.float64, device=z.device)
    z_hat, lse = reference.soft_quantize_forward(z64, c64, s64, PrecisionLayout.SCALAR, None)
    grad_z, grad_c, _, _ = reference.soft_quantize_backward(
        torch.ones_like(z64), z64, c64, s64, PrecisionLayout.SCALAR, None, z_hat, lse, "exact", False, False
    )
    return grad_z, grad_c


def soft_quantize_case(n: int, k: int, d: int, device: str, quick: bool) -> Case:
    case = Case(
        f"soft quantization N={n} K={k} D={d} fp32, forward+backward",
        6.0 * 2 * n * k * d,
        ["torch cdist→softmax→matmul"],
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    z, c, s, _ = testing.soft_quantize_sample(n, k, d, generator=gen, device=device)
    z.requires_grad_(True), c.requires_grad_(True)
    budget = 0.3 if quick else 1.0
    expected = reference_gradients(z, c, s)

    def checker(tolerance):
        def check(grads):
            check_close("dL/dz", grads[0], expected[0], tolerance)
            check_close("dL/dc", grads[1], expected[1], tolerance)

        return check

    def step(forward):
        def run():
            z.grad = c.grad = None
            out = forward()
            out.backward(torch.ones_like(out))
            return z.grad, c.grad

        return run

    for backend in timed_backends(device):
        # CPU kernels are always exact; on the GPU both tensor-core settings get a row.
        for accuracy in ("exact", "fast") if device == "cuda" and backend != "torch" else ("exact",):
            label = f"latentops {backend}" + (f" {accuracy}" if device == "cuda" and backend != "torch" else "")
            measure(
                case,
                label,
                step(lambda b=backend, a=accuracy: latentops.soft_quantize(z, c, s, backend=b, accuracy=a)),
                device,
                check=checker(1e-4 if accuracy == "exact" else 1e-2),
                budget_s=budget,
            )
    measure(
        case,
        "torch cdist→softmax→matmul",
        step(lambda: torch.softmax(-0.5 * s * torch.cdist(z, c).square(), 1) @ c),
        device,
        check=checker(1e-3),
        budget_s=budget,
    )
    if device == "cuda":

        def sdpa():
            bias = (-0.5 * s * (c * c).sum(1))[None, None, None, :].expand(1, 1, n, k)
            return torch.nn.functional.scaled_dot_product_attention(
                z[None, None], c[None, None], c[None, None], attn_mask=bias, scale=s
            )[0, 0]

        measure(case, "torch SDPA with a float bias", step(sdpa), device, check=checker(1e-2), budget_s=budget)
    return case
