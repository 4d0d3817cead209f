"""latentops.nearest_centroid: argmin_k ‖z − c_k‖² and that distance, as the custom op
latentops::nearest_centroid (fake impl for tracing, autograd for the distance)."""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.ops._checks import KERNEL_DTYPES, check_choice, check_same_device, check_tensor
from latentops.reference import nearest_centroid as reference

PRECISIONS = ("exact", "fast")


def nearest_centroid(z: torch.Tensor, codebook: torch.Tensor, *, precision: str = "exact",
                     backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook row of every vector of z.

    Args:
        z: (..., D) float tensor (float32, float16, bfloat16; float64 runs on the torch reference).
        codebook: (K, D) with K ≥ 1, on z's device. A dtype differing from z's is promoted.
        precision: "exact" (default): the chosen index is the true nearest centroid up to 1e-5
            relative in distance, whatever the backend. "fast": tensor-core (tf32/fp16/bf16)
            distances decide, so near-ties may pick a slightly farther centroid.
        backend: "cuda", "triton", "cpu" or "torch"; None picks the fastest for the device
            (see latentops.use_backend).

    Returns:
        (indices, sq_dist): int64 (...) and float32 (...) (float64 for float64 inputs). Ties go to
        the lowest index, like torch.argmin. sq_dist is Σ (z − c)² of the chosen centroid computed
        directly in fp32, and is differentiable with respect to z and codebook; indices are not.

    NaN: a NaN distance never wins over a number; a row whose distances are all NaN (z has a NaN)
    gets index 0 and a NaN distance. Inputs are not scanned for NaN (that would cost a host sync).
    """
    check_tensor("z", z)
    check_tensor("codebook", codebook)
    device = check_same_device(z=z, codebook=codebook)
    check_choice("precision", precision, PRECISIONS)
    if codebook.dim() != 2:
        raise ValueError(f"codebook must be 2-D (K, D), got shape {tuple(codebook.shape)}")
    if z.dim() < 1:
        raise ValueError("z must have at least one dimension (..., D), got a scalar")
    k, d = codebook.shape
    if k == 0:
        raise ValueError(f"codebook must have at least one row, got shape {tuple(codebook.shape)}")
    if d == 0 or z.shape[-1] != d:
        raise ValueError(f"z's last dimension must equal codebook's D = {d} ≥ 1: "
                         f"got z {tuple(z.shape)} and codebook {tuple(codebook.shape)}")
    dtype = torch.promote_types(z.dtype, codebook.dtype)
    chosen = "torch" if dtype == torch.float64 else _backend.resolve(backend, device)
    lead = z.shape[:-1]
    sq_dist, indices = torch.ops.latentops.nearest_centroid(
        z.reshape(-1, d).to(dtype), codebook.to(dtype), precision == "exact", chosen)
    return indices.reshape(lead), sq_dist.reshape(lead)


# The op returns (sq_dist, indices): float output first, which torch.library.opcheck's gradient
# checks need (they sum the outputs in order).
@torch.library.custom_op("latentops::nearest_centroid", mutates_args=())
def _nearest_centroid(z: torch.Tensor, codebook: torch.Tensor, exact: bool,
                      backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    z, codebook = z.contiguous(), codebook.contiguous()
    if z.shape[0] == 0:
        indices, sq_dist = _empty_outputs(z)
    elif backend == "cuda":
        indices, sq_dist = _run_cuda(z, codebook, exact)
    elif backend == "triton":
        indices, sq_dist = _backend.triton_kernels.nearest_centroid.nearest_centroid_forward(
            z, codebook, exact)
    elif backend == "cpu":
        indices, sq_dist = _run_cpu(z.float(), codebook.float())
    else:
        indices, sq_dist = reference.nearest_centroid(z, codebook)
    return sq_dist, indices


def _out_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _empty_outputs(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = z.shape[0]
    return (z.new_empty(n, dtype=torch.int64), z.new_empty(n, dtype=_out_dtype(z)))


@_nearest_centroid.register_fake
def _(z, codebook, exact, backend):
    indices, sq_dist = _empty_outputs(z)
    return sq_dist, indices


def _run_cpu(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    indices, sq_dist = _empty_outputs(z)
    n, d = z.shape
    _backend.native.nearest_centroid_cpu(z.data_ptr(), codebook.data_ptr(), n, codebook.shape[0], d,
                                         indices.data_ptr(), sq_dist.data_ptr())
    return indices, sq_dist


def _run_cuda(z: torch.Tensor, codebook: torch.Tensor, exact: bool):
    native = _backend.native
    indices, sq_dist = _empty_outputs(z)
    (n, d), k = z.shape, codebook.shape[0]
    with torch.cuda.device(z.device):
        workspace = torch.empty(native.nearest_centroid_cuda_workspace_bytes(n, k, d),
                                dtype=torch.uint8, device=z.device)
        native.nearest_centroid_cuda(z.data_ptr(), codebook.data_ptr(), n, k, d,
                                     KERNEL_DTYPES[z.dtype], exact, indices.data_ptr(),
                                     sq_dist.data_ptr(), workspace.data_ptr(),
                                     torch.cuda.current_stream(z.device).cuda_stream)
    return indices, sq_dist


def _setup_context(ctx, inputs, output):
    z, codebook, _, _ = inputs
    ctx.save_for_backward(z, codebook, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_sq_dist, grad_indices):
    # d/dz Σ(z − c_i)² = 2(z − c_i); d/dc_k = −Σ_{n: i_n = k} 2(z_n − c_k).
    z, codebook, indices = ctx.saved_tensors
    acc = _out_dtype(z)
    scaled = 2.0 * (z.to(acc) - codebook[indices].to(acc)) * grad_sq_dist.to(acc).unsqueeze(-1)
    grad_z = scaled.to(z.dtype) if ctx.needs_input_grad[0] else None
    grad_codebook = None
    if ctx.needs_input_grad[1]:
        grad_codebook = torch.zeros(codebook.shape, dtype=acc, device=codebook.device)
        grad_codebook = grad_codebook.index_add(0, indices, -scaled).to(codebook.dtype)
    return grad_z, grad_codebook, None, None


_nearest_centroid.register_autograd(_backward, setup_context=_setup_context)
