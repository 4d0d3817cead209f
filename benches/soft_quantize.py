"""Soft quantization, forward and backward timed apart, as the Wu & Flierl regularizer trains: latentops'
backends against torch's cdist → softmax → matmul (and SDPA with a float bias on the GPU), every
row's gradients checked against the float64 reference."""

from __future__ import annotations

import torch

import latentops
from harness import Case, check_close, measure_forward_backward, timed_backends
from latentops import testing
from latentops.kernel_enums import PrecisionLayout
from latentops.reference import soft_quantize as reference


def reference_forward_and_gradients(z: torch.Tensor, c: torch.Tensor, s: float):
    """(ẑ, dL/dz, dL/dc) of L = Σ ẑ in float64 (the reference's chunked forward and backward)."""
    z64, c64 = z.detach().double(), c.detach().double()
    s64 = torch.full((1,), s, dtype=torch.float64, device=z.device)
    z_hat, lse = reference.soft_quantize_forward(z64, c64, s64, PrecisionLayout.SCALAR, None)
    grad_z, grad_c, _, _ = reference.soft_quantize_backward(
        torch.ones_like(z64), z64, c64, s64, PrecisionLayout.SCALAR, None, z_hat, lse, "exact", False, False
    )
    return z_hat, grad_z, grad_c


def soft_quantize_case(n: int, k: int, d: int, device: str, quick: bool) -> Case:
    case = Case(
        f"soft quantization N={n} K={k} D={d} fp32, forward and backward (of Σ ẑ) apart",
        0.0,  # the forward is 2 products of N·K·D, the backward 4: GFLOP/s would mix them
        ["torch cdist→softmax→matmul fwd", "torch cdist→softmax→matmul bwd"],
        family="soft_quantize",
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    z, c, s, _ = testing.soft_quantize_sample(n, k, d, generator=gen, device=device)
    z.requires_grad_(True), c.requires_grad_(True)
    budget = 0.3 if quick else 1.0
    z_hat, grad_z, grad_c = reference_forward_and_gradients(z, c, s)

    def run(name, forward, tolerance):
        def check_grads(grads):
            return max(
                check_close("dL/dz", grads[0], grad_z, tolerance), check_close("dL/dc", grads[1], grad_c, tolerance)
            )

        measure_forward_backward(
            case,
            name,
            forward,
            [z, c],
            device,
            check_forward=lambda out: check_close("ẑ", out, z_hat, tolerance),
            check_grads=check_grads,
            budget_s=budget,
        )

    for backend in timed_backends(device, case):
        # CPU kernels are always exact; on the GPU both tensor-core settings get rows.
        for accuracy in ("exact", "fast") if device == "cuda" and backend != "torch" else ("exact",):
            label = f"latentops {backend}" + (f" {accuracy}" if device == "cuda" and backend != "torch" else "")
            run(
                label,
                lambda b=backend, a=accuracy: latentops.soft_quantize(z, c, s, backend=b, accuracy=a),
                1e-4 if accuracy == "exact" else 1e-2,
            )
    run("torch cdist→softmax→matmul", lambda: torch.softmax(-0.5 * s * torch.cdist(z, c).square(), 1) @ c, 1e-3)
    if device == "cuda":

        def sdpa():
            bias = (-0.5 * s * (c * c).sum(1))[None, None, None, :].expand(1, 1, n, k)
            return torch.nn.functional.scaled_dot_product_attention(
                z[None, None], c[None, None], c[None, None], attn_mask=bias, scale=s
            )[0, 0]

        run("torch SDPA with a float bias", sdpa, 1e-2)
    return case
