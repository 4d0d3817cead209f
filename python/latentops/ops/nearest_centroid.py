"""latentops.nearest_centroid: argmin_k ‖z − c_k‖² and that distance.

One stage, the custom op latentops::nearest_centroid (fake impl for tracing; autograd for the
distance, the same torch code for every backend), and its table of backends."""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.native import nearest_centroid as native
from latentops.ops.checks import ACCURACIES, check_choice, check_vectors
from latentops.ops.registration import Stage
from latentops.reference import nearest_centroid as reference

KERNELS = _backend.Kernels(
    "nearest_centroid",
    stages={
        "forward": {
            "cuda": native.nearest_centroid_forward_cuda,
            "triton": _backend.triton_kernel("nearest_centroid", "nearest_centroid_forward"),
            "cpu": native.nearest_centroid_forward_cpu,
            "torch": reference.nearest_centroid_forward,
        }
    },
    dtypes=_backend.KERNEL_AND_REFERENCE_DTYPES,
)


def nearest_centroid(
    z: torch.Tensor, codebook: torch.Tensor, *, accuracy: str = "exact", backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook row of every vector of z.

    Args:
        z: (..., D) float tensor (float32, float16, bfloat16; float64 runs on the torch reference).
        codebook: (K, D) with K ≥ 1, on z's device. A dtype differing from z's is promoted.
        accuracy: "exact" (default): the chosen index is the true nearest centroid up to 1e-5
            relative in distance, whatever the backend. "fast": tensor-core (tf32/fp16/bf16)
            distances decide, so near-ties may pick a slightly farther centroid.
        backend: "cuda", "triton", "cpu" or "torch"; None picks the fastest that can run the call
            (see latentops.use_backend). A named backend that cannot run it is a ValueError.

    Returns:
        (indices, sq_dist): int64 (...) and float32 (...) (float64 for float64 inputs). Ties go to
        the lowest index, like torch.argmin. sq_dist is Σ (z − c)² of the chosen centroid computed
        directly in fp32, and is differentiable with respect to z and codebook; indices are not.

    Magnitudes: "exact" holds for finite float32/float16/bfloat16 values of any magnitude, around
    1e-30 or 1e30 and far from the origin alike (the backends centre and scale, or decide in
    float64); only sq_dist, a float32, underflows to 0 or overflows to inf there. float64 distances
    past ~1e308 overflow to +inf and tie. "fast" scores fp32 data centred and scaled on Triton,
    but unscaled on CUDA, whose products underflow around 1e-19 and overflow around 1e19.

    NaN and inf (every backend, both accuracies): the index is the argmin of the direct distance Σ (z − c)² under
    IEEE rules, where a NaN distance never wins over a number (+inf included):
    - a codebook row holding a NaN is never chosen for a row that has a number among its distances;
    - a codebook row holding ±inf is +inf away from every finite z (so never chosen over a finite
      row) and NaN away from a z with the same infinity in that column (inf − inf);
    - a z row holding a NaN has only NaN distances: index 0, sq_dist NaN;
    - a z row holding ±inf is +inf or NaN away from every centroid: the lowest index whose
      distance is +inf (0 if all are NaN), sq_dist inf (NaN).
    Ties, +inf ones included, go to the lowest index. Inputs are not scanned for NaN (that would
    cost a host sync).
    """
    _, d = check_vectors(z, codebook)
    check_choice("accuracy", accuracy, ACCURACIES)
    dtype = torch.promote_types(z.dtype, codebook.dtype)
    chosen = KERNELS.resolve(backend, z.device, dtype)
    sq_dist, indices = _forward(z.reshape(-1, d).to(dtype), codebook.to(dtype), accuracy, chosen)
    return indices.reshape(z.shape[:-1]), sq_dist.reshape(z.shape[:-1])


def _distance_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


# The stage returns (sq_dist, indices): float output first, which torch.library.opcheck's gradient
# checks need (they sum the outputs in order).
def _forward_impl(
    z: torch.Tensor, codebook: torch.Tensor, accuracy: str, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if z.shape[0] == 0:
        return _forward_fake(z, codebook, accuracy, backend)
    indices, sq_dist = KERNELS.run("forward", backend, z.contiguous(), codebook.contiguous(), accuracy)
    return sq_dist, indices


def _forward_fake(z, codebook, accuracy, backend):
    n = z.shape[0]
    return z.new_empty(n, dtype=_distance_dtype(z)), z.new_empty(n, dtype=torch.int64)


def _setup_context(ctx, inputs, output):
    z, codebook, _, _ = inputs
    ctx.save_for_backward(z, codebook, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_sq_dist, grad_indices):
    # d/dz Σ(z − c_i)² = 2(z − c_i); d/dc_k = −Σ_{n: i_n = k} 2(z_n − c_k).
    z, codebook, indices = ctx.saved_tensors
    acc = _distance_dtype(z)
    scaled = 2.0 * (z.to(acc) - codebook[indices].to(acc)) * grad_sq_dist.to(acc).unsqueeze(-1)
    grad_z = scaled.to(z.dtype) if ctx.needs_input_grad[0] else None
    grad_codebook = None
    if ctx.needs_input_grad[1]:
        grad_codebook = torch.zeros(codebook.shape, dtype=acc, device=codebook.device)
        grad_codebook = grad_codebook.index_add(0, indices, -scaled).to(codebook.dtype)
    return grad_z, grad_codebook, None, None


_forward = Stage("nearest_centroid", _forward_impl, _forward_fake, setup_context=_setup_context, backward=_backward)
