"""latentops.compressed_linear: y = x·Wᵀ + b with W held in the hcsr format of latentops.codecs and
decoded on the fly, fused with the product (the dense W is never materialized); and
latentops.decompress, the decode alone.

Two stages: latentops::compressed_linear_decode (the dense W; the backward's product needs it) and
latentops::compressed_linear_forward (the fused product). Gradients reach x (grad_y·W, through the
decode stage of the same backend) and the bias; the compressed weight is frozen.
"""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.codecs.hcsr import HcsrMatrix
from latentops.native import compressed_linear as native
from latentops.ops.checks import check_same_device, check_tensor
from latentops.ops.registration import Stage
from latentops.reference import compressed_linear as reference

KERNELS = _backend.Kernels(
    "compressed_linear",
    stages={
        "decode": {
            "cuda": native.compressed_linear_decode_cuda,
            "triton": _backend.triton_kernel("compressed_linear", "compressed_linear_decode"),
            "cpu": native.compressed_linear_decode_cpu,
            "torch": reference.compressed_linear_decode,
        },
        "forward": {
            "cuda": native.compressed_linear_forward_cuda,
            "triton": _backend.triton_kernel("compressed_linear", "compressed_linear_forward"),
            "cpu": native.compressed_linear_forward_cpu,
            "torch": reference.compressed_linear_forward,
        },
    },
    dtypes=_backend.KERNEL_AND_REFERENCE_DTYPES,
    # Both GPU kernels passed the GPU tests on an H200 (benches/results/h200-2026-11-30.md); Triton
    # was the faster there (0.22 against 0.38 ms at batch 1), so CUDA tensors use it and the CUDA
    # kernel runs when named.
    used_only_when_named=("cuda",),
)

# The stage arguments after the tensors, in order (HcsrMatrix.kernel_args gives them all).
_TENSORS = ("words", "row_bits", "row_nnz", "gap_lut", "value_lut", "codebook")
_INTS = ("cols", "gap_bits", "value_bits", "escape", "escape_bits")


def compressed_linear(
    x: torch.Tensor, weight: HcsrMatrix, bias: torch.Tensor | None = None, *, backend: str | None = None
) -> torch.Tensor:
    """F.linear(x, weight.decode(), bias) without the dense weight.

    Args:
        x: (..., in_features) float tensor (float32, float16, bfloat16; float64 runs on the torch
            reference). The kernels compute in float32 and return x's dtype.
        weight: an HcsrMatrix of shape (out_features, in_features): latentops.codecs.encode(...,
            format="hcsr"). Its tables are copied to x's device once and cached on it.
        bias: None or (out_features,) on x's device.
        backend: "cpu" (C++: threads over rows, AVX2), "cuda", "triton" or "torch" (decode, then
            a dense product); None picks the fastest that can run the call (Triton for CUDA
            tensors; the CUDA kernel, slower on an H200, runs when named).

    Returns:
        (..., out_features) in x's dtype. Differentiable with respect to x and bias.
    """
    if not isinstance(weight, HcsrMatrix):
        got = f"a {weight.format!r} matrix" if hasattr(weight, "format") else type(weight).__name__
        raise TypeError(
            f"weight must be an HcsrMatrix (latentops.codecs.encode(..., format='hcsr')), got {got}; "
            "other formats can be decoded with .decode() and used with F.linear"
        )
    check_tensor("x", x)
    rows, cols = weight.shape
    if x.dim() < 1 or x.shape[-1] != cols:
        raise ValueError(f"x's last dimension must be weight's in_features = {cols}, got x {tuple(x.shape)}")
    if bias is not None:
        check_tensor("bias", bias)
        check_same_device(x=x, bias=bias)
        if tuple(bias.shape) != (rows,):
            raise ValueError(f"bias must have shape (out_features,) = ({rows},), got {tuple(bias.shape)}")
    chosen = KERNELS.resolve(backend, x.device, x.dtype)
    args = weight.kernel_args(x.device)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = _forward(
        x.reshape(x.shape[:-1].numel(), cols).to(acc), *(args[n] for n in _TENSORS), *(args[n] for n in _INTS), chosen
    )
    if bias is not None:
        y = y + bias.to(y.dtype)  # in the compute dtype, rounded to x's dtype once
    return y.to(x.dtype).reshape(*x.shape[:-1], rows)


def decompress(weight: HcsrMatrix, *, device: torch.device | str = "cpu", backend: str | None = None) -> torch.Tensor:
    """The dense float32 (out_features, in_features) weight, decoded on `device` by `backend`
    (every backend gives the same bits)."""
    if not isinstance(weight, HcsrMatrix):
        raise TypeError(f"weight must be an HcsrMatrix, got {type(weight).__name__}")
    device = torch.device(device)
    chosen = KERNELS.resolve(backend, device, torch.float32)
    args = weight.kernel_args(device)
    return _decode(*(args[n] for n in _TENSORS), *(args[n] for n in _INTS), chosen)


# -- decode stage -------------------------------------------------------------------------------


def _decode_impl(
    words: torch.Tensor,
    row_bits: torch.Tensor,
    row_nnz: torch.Tensor,
    gap_lut: torch.Tensor,
    value_lut: torch.Tensor,
    codebook: torch.Tensor,
    cols: int,
    gap_bits: int,
    value_bits: int,
    escape: int,
    escape_bits: int,
    backend: str,
) -> torch.Tensor:
    if row_nnz.numel() == 0 or cols == 0:
        return torch.zeros((row_nnz.shape[0], cols), dtype=torch.float32, device=words.device)
    return KERNELS.run(
        "decode",
        backend,
        words,
        row_bits,
        row_nnz,
        gap_lut,
        value_lut,
        codebook,
        cols,
        gap_bits,
        value_bits,
        escape,
        escape_bits,
    )


def _decode_fake(
    words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits, backend
):
    return words.new_empty((row_nnz.shape[0], cols), dtype=torch.float32)


_decode = Stage("compressed_linear_decode", _decode_impl, _decode_fake)


# -- forward stage ------------------------------------------------------------------------------


def _forward_impl(
    x: torch.Tensor,
    words: torch.Tensor,
    row_bits: torch.Tensor,
    row_nnz: torch.Tensor,
    gap_lut: torch.Tensor,
    value_lut: torch.Tensor,
    codebook: torch.Tensor,
    cols: int,
    gap_bits: int,
    value_bits: int,
    escape: int,
    escape_bits: int,
    backend: str,
) -> torch.Tensor:
    matrix = (words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits)
    if x.shape[0] == 0 or row_nnz.numel() == 0 or cols == 0:
        return _forward_fake(x, *matrix, backend).zero_()
    return KERNELS.run("forward", backend, x.contiguous(), *matrix)


def _forward_fake(x, words, row_bits, row_nnz, *rest):
    return x.new_empty((x.shape[0], row_nnz.shape[0]))


def _setup_context(ctx, inputs, output):
    _x, *matrix, backend = inputs
    ctx.save_for_backward(*matrix[:6])
    ctx.args = (*matrix[6:], backend)


def _backward(ctx, grad_y):
    dense = _decode(*ctx.saved_tensors, *ctx.args)
    grad_x = grad_y @ dense.to(grad_y.dtype)
    return (grad_x, *(None,) * 12)


_forward = Stage(
    "compressed_linear_forward", _forward_impl, _forward_fake, setup_context=_setup_context, backward=_backward
)
