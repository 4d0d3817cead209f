"""latentops.soft_quantize: posterior-mean soft quantization (Wu & Flierl, AAAI 2020).

Two stages, FlashAttention-style: the custom op latentops::soft_quantize_forward keeps only the
per-row log-sum-exp, and latentops::soft_quantize_backward recomputes the posteriors tile by tile;
one table of backends for both."""

from __future__ import annotations

import math

import torch

from latentops import _backend
from latentops.kernel_enums import PrecisionLayout
from latentops.native import soft_quantize as native
from latentops.ops.checks import ACCURACIES, check_choice, check_same_device, check_tensor, check_vectors
from latentops.ops.registration import Stage
from latentops.reference import soft_quantize as reference

KERNELS = _backend.Kernels(
    "soft_quantize",
    stages={
        "forward": {
            "cuda": native.soft_quantize_forward_cuda,
            "triton": _backend.triton_kernel("soft_quantize", "soft_quantize_forward"),
            "cpu": native.soft_quantize_forward_cpu,
            "torch": reference.soft_quantize_forward,
        },
        "backward": {
            "cuda": native.soft_quantize_backward_cuda,
            "triton": _backend.triton_kernel("soft_quantize", "soft_quantize_backward"),
            "cpu": native.soft_quantize_backward_cpu,
            "torch": reference.soft_quantize_backward,
        },
    },
    dtypes=_backend.KERNEL_AND_REFERENCE_DTYPES,
    # The CUDA kernel failed on an H200 (benches/results/h200-2026-11-30.md: the centroid gradient
    # at 4e-4 relative error, and 4-8x slower than Triton): CUDA tensors use Triton, which passed,
    # unless backend="cuda" is named.
    used_only_when_named=("cuda",),
)


def soft_quantize(
    z: torch.Tensor,
    codebook: torch.Tensor,
    precision=1.0,
    log_prior: torch.Tensor | None = None,
    *,
    accuracy: str = "exact",
    backend: str | None = None,
    return_probs: bool = False,
):
    """ẑ_n = Σ_k p_nk c_k with p_n = softmax_k(−½·s_nk·‖z_n − c_k‖² + b_nk).

    Args:
        z: (..., D) float tensor (float32, float16, bfloat16; float64 runs on the torch reference).
        codebook: (K, D) on z's device.
        precision: s = 1/σ², finite and ≥ 0 (s = 0: uniform posteriors): a float, or a tensor of
            shape (), (N, 1), (1, K) or (N, K) with N the number of vectors in z (z's leading dims
            may stand for N: (..., 1) or (..., K)). Differentiable when a tensor. A tensor is
            checked by value: one device-to-host sync for a CUDA tensor; skipped while
            torch.compile traces (the kernels' results for a bad s are then unspecified).
        log_prior: None, (K,): b, the log prior of the centroids, or (N, K) (z's leading dims may
            stand for N): one per vector, e.g. Wu & Flierl's −½·log s_nk (differentiable). The
            kernels take (K,); an (N, K) log_prior runs on the torch reference (automatically; a
            named other backend is a ValueError).
        accuracy: "exact" (default): fp32-accurate dot products (3xTF32 on GPU tensor cores, fp32
            FMA on the CPU); "fast": one tf32 tensor-core product on the GPU (~3e-4 relative error
            in the distances, scaled by s). The CPU and torch backends are always exact.
        backend: "cuda", "triton", "cpu" or "torch"; None picks the fastest that can run the call
            (Triton for CUDA tensors: the CUDA kernel, which failed its GPU tests, runs only when
            named). A named backend that cannot run the call is a ValueError.
        return_probs: also return the (..., K) posteriors p (materialized: small problems only).

    Returns:
        ẑ (..., D) in z's dtype, or (ẑ, p) with return_probs. Gradients reach z, codebook, a tensor
        precision and log_prior. Memory beyond inputs and outputs is O(N + K), never O(N·K) (except
        for a full (N, K) precision, itself an N×K input).

    NaN/inf policy (the same on every backend, no sync): a row of z holding a NaN or ±inf gives a
    NaN row of ẑ (and of p); a NaN or ±inf anywhere in the codebook, or a NaN or +inf in log_prior,
    makes every row NaN. log_prior may hold −inf: that centroid gets p = 0, and a row whose logits
    are all −inf is NaN. Finite inputs give finite results while ‖z − μ‖², ‖c − μ‖² (μ the codebook
    mean) and s·‖z − c‖² stay below the compute dtype's maximum (~1e38 in float32): large logits
    (|l| ≫ 1e9) are fine. Gradients are finite for finite inputs within those limits; with a
    non-finite input they are unspecified.
    """
    k, d = check_vectors(z, codebook)
    check_choice("accuracy", accuracy, ACCURACIES)
    lead = z.shape[:-1]
    n = lead.numel()
    s, layout = _precision_layout(precision, lead, n, k, z.device)
    dtype = torch.promote_types(z.dtype, codebook.dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    if log_prior is not None:
        check_tensor("log_prior", log_prior)
        check_same_device(z=z, log_prior=log_prior)
        shape = tuple(log_prior.shape)
        if shape in ((k,), (1, k)):
            log_prior = log_prior.reshape(k)
        elif shape in ((n, k), (*lead, k)):
            log_prior = log_prior.reshape(n, k)
        else:
            raise ValueError(
                f"log_prior must have shape (K,) = ({k},) or (N, K) = ({n}, {k}) with N the vectors of z, got {shape}"
            )
        log_prior = log_prior.to(acc).contiguous()
    chosen = KERNELS.resolve(backend, z.device, dtype)
    if log_prior is not None and log_prior.dim() == 2 and chosen != "torch":
        if backend is not None:
            raise ValueError(
                f"backend {backend!r} takes a log_prior of shape (K,); an (N, K) log_prior runs on backend='torch'"
            )
        chosen = "torch"
    z2, c = z.reshape(n, d).to(dtype), codebook.to(dtype)
    if isinstance(precision, (int, float)) and precision > torch.finfo(acc).max:
        raise ValueError(f"precision must be finite in the compute dtype {acc}, got {precision!r}")
    s = s.to(acc)
    z_hat, _ = _forward(z2, c, s, int(layout), log_prior, accuracy, chosen)
    # The NaN policy, enforced here rather than trusted to each kernel's clamps and maxima.
    poisoned = _non_finite_rows(z2, c, log_prior).unsqueeze(1)
    z_hat = torch.where(poisoned, torch.nan, z_hat).to(z.dtype).reshape(z.shape)
    if not return_probs:
        return z_hat
    probs = torch.where(poisoned, torch.nan, reference.soft_assignments(z2, c, s, layout, log_prior))
    return z_hat, probs.reshape(*lead, k)


def _non_finite_rows(z: torch.Tensor, codebook: torch.Tensor, log_prior: torch.Tensor | None) -> torch.Tensor:
    """(N,) bool: the rows the NaN policy makes NaN (computed on the device: no sync)."""
    bad = ~z.isfinite().all(1) | ~codebook.isfinite().all()
    if log_prior is not None:  # a (K,) prior poisons every row, an (N, K) one its own row
        poison = log_prior.isnan() | (log_prior == math.inf)
        bad = bad | (poison.any(1) if log_prior.dim() == 2 else poison.any())
    return bad


def _precision_layout(precision, lead, n: int, k: int, device) -> tuple[torch.Tensor, PrecisionLayout]:
    """s in the kernels' layout: (1,) scalar, (N,) per row, (K,) per centroid or (N, K) full."""
    if isinstance(precision, (int, float)) and not isinstance(precision, bool):
        if not 0 <= precision < math.inf:
            raise ValueError(f"precision must be finite and ≥ 0, got {precision!r}")
        # float64, so that a float64 call keeps s to the last digit (the caller casts to its dtype)
        return torch.full((1,), float(precision), dtype=torch.float64, device=device), PrecisionLayout.SCALAR
    if isinstance(precision, bool) or not isinstance(precision, torch.Tensor):
        raise TypeError(f"precision must be a float or a tensor, got {type(precision).__name__}")
    check_tensor("precision", precision)
    check_same_device(z=torch.empty(0, device=device), precision=precision)
    # The same rule for a tensor, by value: one device-to-host sync for a CUDA tensor. Skipped while
    # torch.compile traces (a data-dependent branch would break the graph).
    if (
        not torch.compiler.is_compiling()
        and precision.numel()
        and not bool(((precision >= 0) & (precision < math.inf)).all())
    ):
        bad = precision[~((precision >= 0) & (precision < math.inf))].reshape(-1)[0].item()
        raise ValueError(f"precision must be finite and ≥ 0 everywhere, got an entry {bad!r}")
    shape = tuple(precision.shape)
    layouts = {
        (): PrecisionLayout.SCALAR,
        (1,): PrecisionLayout.SCALAR,
        (1, 1): PrecisionLayout.SCALAR,
        (n, 1): PrecisionLayout.PER_ROW,
        (*lead, 1): PrecisionLayout.PER_ROW,
        (1, k): PrecisionLayout.PER_CENTROID,
        (k,): PrecisionLayout.PER_CENTROID,
        (n, k): PrecisionLayout.FULL,
        (*lead, k): PrecisionLayout.FULL,
    }
    if shape not in layouts:
        raise ValueError(
            f"precision must be a float or a tensor of shape (), (N, 1), (1, K) or (N, K) "
            f"with N = {n} vectors and K = {k} centroids, got shape {shape}"
        )
    layout = layouts[shape]
    flat = {
        PrecisionLayout.SCALAR: (1,),
        PrecisionLayout.PER_ROW: (n,),
        PrecisionLayout.PER_CENTROID: (k,),
        PrecisionLayout.FULL: (n, k),
    }[layout]
    return precision.reshape(flat), layout


def _acc(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


# -- forward stage ------------------------------------------------------------------------------


def _forward_impl(
    z: torch.Tensor,
    codebook: torch.Tensor,
    s: torch.Tensor,
    s_layout: int,
    log_prior: torch.Tensor | None,
    accuracy: str,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    if z.shape[0] == 0:
        return _forward_fake(z, codebook, s, s_layout, log_prior, accuracy, backend)
    return KERNELS.run(
        "forward", backend, z.contiguous(), codebook.contiguous(), s.contiguous(), s_layout, log_prior, accuracy
    )


def _forward_fake(z, codebook, s, s_layout, log_prior, accuracy, backend):
    return z.new_empty(z.shape, dtype=_acc(z)), z.new_empty(z.shape[0], dtype=_acc(z))


def _setup_context(ctx, inputs, output):
    z, codebook, s, s_layout, log_prior, accuracy, backend = inputs
    ctx.args = (s_layout, accuracy, backend)
    ctx.has_prior = log_prior is not None
    ctx.save_for_backward(z, codebook, s, log_prior, *output)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_z_hat, grad_lse):
    # lse is an internal output (the wrapper drops it), so grad_lse is never used.
    z, codebook, s, log_prior, z_hat, lse = ctx.saved_tensors
    s_layout, accuracy, backend = ctx.args
    need_s, need_b = ctx.needs_input_grad[2], ctx.has_prior and ctx.needs_input_grad[4]
    grad_z, grad_c, grad_s, grad_b = _backward_stage(
        grad_z_hat, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, backend, need_s, need_b
    )
    return (
        grad_z.to(z.dtype),
        grad_c.to(codebook.dtype),
        grad_s.to(s.dtype) if need_s else None,
        None,
        grad_b.to(log_prior.dtype) if need_b else None,
        None,
        None,
    )


_forward = Stage(
    "soft_quantize_forward", _forward_impl, _forward_fake, setup_context=_setup_context, backward=_backward
)


# -- backward stage -----------------------------------------------------------------------------


def _backward_impl(
    grad: torch.Tensor,
    z: torch.Tensor,
    codebook: torch.Tensor,
    s: torch.Tensor,
    s_layout: int,
    log_prior: torch.Tensor | None,
    z_hat: torch.Tensor,
    lse: torch.Tensor,
    accuracy: str,
    backend: str,
    need_grad_s: bool,
    need_grad_log_prior: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if z.shape[0] == 0:
        grad_z, grad_c, grad_s, grad_b = _backward_fake(
            grad, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, backend, need_grad_s, need_grad_log_prior
        )
        return grad_z, grad_c.zero_(), grad_s.zero_(), grad_b.zero_()
    grad_z, grad_c, grad_s, grad_b = KERNELS.run(
        "backward",
        backend,
        grad.contiguous(),
        z.contiguous(),
        codebook.contiguous(),
        s.contiguous(),
        s_layout,
        log_prior,
        z_hat.contiguous(),
        lse.contiguous(),
        accuracy,
        need_grad_s,
        need_grad_log_prior,
    )
    # A custom op returns tensors only: an empty tensor stands for "not requested".
    return (
        grad_z,
        grad_c,
        grad_z.new_empty(0) if grad_s is None else grad_s,
        grad_z.new_empty(0) if grad_b is None else grad_b,
    )


def _backward_fake(
    grad, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, backend, need_grad_s, need_grad_log_prior
):
    acc = _acc(z)
    return (
        z.new_empty(z.shape, dtype=acc),
        codebook.new_empty(codebook.shape, dtype=acc),
        s.new_empty(s.shape if need_grad_s else (0,), dtype=acc),
        z.new_empty(log_prior.shape if need_grad_log_prior else (0,), dtype=acc),
    )


_backward_stage = Stage("soft_quantize_backward", _backward_impl, _backward_fake)
