"""latentops.soft_quantize: posterior-mean soft quantization (Wu & Flierl, AAAI 2020) as the custom
ops latentops::soft_quantize_fwd / latentops::soft_quantize_bwd, FlashAttention-style: the forward
keeps only the per-row log-sum-exp and the backward recomputes the posteriors tile by tile."""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.ops._checks import check_same_device, check_tensor
from latentops.reference import soft_quantize as reference

IMPLEMENTED = ("cuda", "triton", "cpu", "torch")
# The CUDA kernel has not yet run on a GPU (written and compiled without one): it runs only when asked
# for by name, and CUDA tensors default to Triton until the GPU test suite has passed on it.
EXPLICIT_ONLY = ("cuda",)
ACCURACIES = ("exact", "fast")


def soft_quantize(z: torch.Tensor, codebook: torch.Tensor, precision=1.0,
                  log_prior: torch.Tensor | None = None, *, accuracy: str = "exact",
                  backend: str | None = None, return_probs: bool = False):
    """ẑ_n = Σ_k p_nk c_k with p_n = softmax_k(−½·s_nk·‖z_n − c_k‖² + b_k).

    Args:
        z: (..., D) float tensor (float32, float16, bfloat16; float64 runs on the torch reference).
        codebook: (K, D) on z's device.
        precision: s = 1/σ² ≥ 0: a float, or a tensor of shape (), (N, 1), (1, K) or (N, K) with N the
            number of vectors in z (z's leading dims may stand for N: (..., 1) or (..., K)).
            Differentiable when a tensor.
        log_prior: None or (K,): b, the log prior of the centroids (differentiable).
        accuracy: "exact" (default): fp32-accurate dot products (3xTF32 on GPU tensor cores, fp32
            FMA on the CPU); "fast": one tf32 tensor-core product on the GPU (~3e-4 relative error
            in the distances, scaled by s). The CPU and torch backends are always exact.
        backend: "cuda", "triton", "cpu" or "torch"; None picks the fastest for the device (Triton
            for CUDA tensors: the CUDA kernel is used only when named, until validated on a GPU).
        return_probs: also return the (..., K) posteriors p (materialized: small problems only).

    Returns:
        ẑ (..., D) in z's dtype, or (ẑ, p) with return_probs. Gradients reach z, codebook, a tensor
        precision and log_prior. Memory beyond inputs and outputs is O(N + K), never O(N·K) (except
        for a full (N, K) precision, itself an N×K input).
    """
    check_tensor("z", z)
    check_tensor("codebook", codebook)
    device = check_same_device(z=z, codebook=codebook)
    if codebook.dim() != 2 or codebook.shape[0] == 0:
        raise ValueError(f"codebook must be 2-D (K, D) with K ≥ 1, got shape {tuple(codebook.shape)}")
    if z.dim() < 1:
        raise ValueError("z must have at least one dimension (..., D), got a scalar")
    k, d = codebook.shape
    if d == 0 or z.shape[-1] != d:
        raise ValueError(f"z's last dimension must equal codebook's D = {d} ≥ 1: "
                         f"got z {tuple(z.shape)} and codebook {tuple(codebook.shape)}")
    lead = z.shape[:-1]
    n = z.reshape(-1, d).shape[0]
    s, s_mode = _precision_layout(precision, lead, n, k, device)
    if accuracy not in ACCURACIES:
        raise ValueError(f"accuracy must be one of {ACCURACIES}, got {accuracy!r}")
    if log_prior is not None:
        check_tensor("log_prior", log_prior)
        check_same_device(z=z, log_prior=log_prior)
        if tuple(log_prior.shape) != (k,):
            raise ValueError(f"log_prior must have shape (K,) = ({k},), got {tuple(log_prior.shape)}")
        log_prior = log_prior.to(torch.float64 if z.dtype == torch.float64 else torch.float32).contiguous()
    dtype = torch.promote_types(z.dtype, codebook.dtype)
    z2, c = z.reshape(n, d).to(dtype), codebook.to(dtype)
    if dtype == torch.float64:
        chosen = "torch"
    else:
        chosen = _backend.resolve(backend, device, implemented=IMPLEMENTED, op="soft_quantize",
                                  explicit_only=EXPLICIT_ONLY)
        s = s.float()
    z_hat, _ = torch.ops.latentops.soft_quantize_fwd(z2, c, s, s_mode, log_prior, chosen,
                                                     accuracy == "exact")
    z_hat = z_hat.to(z.dtype).reshape(z.shape)
    if not return_probs:
        return z_hat
    probs = reference.soft_assignments(z2, c, s, s_mode, log_prior)
    return z_hat, probs.reshape(*lead, k)


def _precision_layout(precision, lead, n: int, k: int, device) -> tuple[torch.Tensor, int]:
    """s in the kernels' layout: (1,) scalar, (N,) per row, (K,) per centroid or (N, K) full."""
    if isinstance(precision, (int, float)) and not isinstance(precision, bool):
        if not precision >= 0:
            raise ValueError(f"precision must be ≥ 0, got {precision!r}")
        return torch.full((1,), float(precision), device=device), reference.SCALAR
    check_tensor("precision", precision)
    check_same_device(z=torch.empty(0, device=device), precision=precision)
    shape = tuple(precision.shape)
    layouts = {(): reference.SCALAR, (1,): reference.SCALAR, (1, 1): reference.SCALAR,
               (n, 1): reference.PER_ROW, (*lead, 1): reference.PER_ROW,
               (1, k): reference.PER_CENTROID, (k,): reference.PER_CENTROID,
               (n, k): reference.FULL, (*lead, k): reference.FULL}
    if shape not in layouts:
        raise ValueError(f"precision must be a float or a tensor of shape (), (N, 1), (1, K) or (N, K) "
                         f"with N = {n} vectors and K = {k} centroids, got shape {shape}")
    mode = layouts[shape]
    flat = {reference.SCALAR: (1,), reference.PER_ROW: (n,), reference.PER_CENTROID: (k,),
            reference.FULL: (n, k)}[mode]
    return precision.reshape(flat), mode


@torch.library.custom_op("latentops::soft_quantize_fwd", mutates_args=())
def _soft_quantize_fwd(z: torch.Tensor, codebook: torch.Tensor, s: torch.Tensor, s_mode: int,
                       log_prior: torch.Tensor | None, backend: str,
                       exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    z, codebook, s = z.contiguous(), codebook.contiguous(), s.contiguous()
    if z.shape[0] == 0:
        return _empty_like_outputs(z)
    if backend == "cuda":
        return _fwd_cuda(z, codebook, s, s_mode, log_prior, exact)
    if backend == "triton":
        return _backend.triton_kernels.soft_quantize.soft_quantize_forward(
            z, codebook, s, s_mode, log_prior, precision=_triton_precision(exact))
    if backend == "cpu":
        z, codebook = z.float(), codebook.float()  # named: the kernel reads them after this line
        z_hat, lse = _empty_like_outputs(z)
        _backend.native.soft_quantize_forward_cpu(
            z.data_ptr(), codebook.data_ptr(), s.data_ptr(), s_mode, _ptr(log_prior), z.shape[0],
            codebook.shape[0], z.shape[1], z_hat.data_ptr(), lse.data_ptr())
        return z_hat, lse
    return reference.soft_quantize_forward(z, codebook, s, s_mode, log_prior)


def _empty_like_outputs(z):
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    return (z.new_empty(z.shape, dtype=acc), z.new_empty(z.shape[0], dtype=acc))


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _triton_precision(exact: bool) -> str:
    return "tf32x3" if exact else "tf32"


def _centred_codebook(codebook: torch.Tensor):
    """(c − μ, ‖c − μ‖², μ) in float32, μ the codebook mean: the CUDA kernel's operands."""
    mu = codebook.mean(0, dtype=torch.float64).to(torch.float32)
    c_centred = (codebook.float() - mu).contiguous()
    return c_centred, c_centred.double().square().sum(1).to(torch.float32), mu.contiguous()


def _fwd_cuda(z, codebook, s, s_mode, log_prior, exact):
    z = z.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    z_hat, lse = _empty_like_outputs(z)
    c_centred, c_sq, mu = _centred_codebook(codebook)
    with torch.cuda.device(z.device):
        _backend.native.soft_quantize_forward_cuda(
            z.data_ptr(), c_centred.data_ptr(), c_sq.data_ptr(), mu.data_ptr(), s.data_ptr(), s_mode,
            _ptr(log_prior), n, k, d, exact, z_hat.data_ptr(), lse.data_ptr(),
            torch.cuda.current_stream(z.device).cuda_stream)
    return z_hat, lse


def _bwd_cuda(grad, z, codebook, s, s_mode, log_prior, need_grad_s, need_grad_log_prior, exact):
    z, grad = z.float().contiguous(), grad.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    grad_z = torch.empty_like(z)
    grad_c = torch.zeros((k, d), dtype=torch.float32, device=z.device)
    grad_b = torch.zeros(k, dtype=torch.float32, device=z.device) if need_grad_log_prior else None
    grad_s = None
    if need_grad_s:  # the scalar layout gets per-row partial sums, summed below
        grad_s = torch.zeros(n if s_mode == reference.SCALAR else s.shape, dtype=torch.float32,
                             device=z.device)
    if n > 0:
        c_centred, c_sq, mu = _centred_codebook(codebook)
        workspace = torch.empty(4 * n, dtype=torch.float32, device=z.device)
        with torch.cuda.device(z.device):
            _backend.native.soft_quantize_backward_cuda(
                grad.data_ptr(), z.data_ptr(), c_centred.data_ptr(), c_sq.data_ptr(), mu.data_ptr(),
                s.data_ptr(), s_mode, _ptr(log_prior), n, k, d, exact, workspace.data_ptr(),
                grad_z.data_ptr(), grad_c.data_ptr(), _ptr(grad_s), _ptr(grad_b),
                torch.cuda.current_stream(z.device).cuda_stream)
    if need_grad_s and s_mode == reference.SCALAR:
        grad_s = grad_s.sum(dtype=torch.float64).to(torch.float32).reshape(s.shape)
    return grad_z, grad_c, grad_s, grad_b


@_soft_quantize_fwd.register_fake
def _(z, codebook, s, s_mode, log_prior, backend, exact):
    return _empty_like_outputs(z)


@torch.library.custom_op("latentops::soft_quantize_bwd", mutates_args=())
def _soft_quantize_bwd(grad: torch.Tensor, z: torch.Tensor, codebook: torch.Tensor, s: torch.Tensor,
                       s_mode: int, log_prior: torch.Tensor | None, z_hat: torch.Tensor,
                       lse: torch.Tensor, backend: str, exact: bool, need_grad_s: bool,
                       need_grad_log_prior: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grad, z, codebook, s = grad.contiguous(), z.contiguous(), codebook.contiguous(), s.contiguous()
    if backend == "cuda":
        out = _bwd_cuda(grad, z, codebook, s, s_mode, log_prior, need_grad_s, need_grad_log_prior, exact)
    elif backend == "triton":
        out = _backend.triton_kernels.soft_quantize.soft_quantize_backward(
            grad, z, codebook, s, s_mode, log_prior, z_hat, lse, need_grad_s, need_grad_log_prior,
            precision=_triton_precision(exact))
    elif backend == "cpu":
        out = _bwd_cpu(grad, z, codebook, s, s_mode, log_prior, z_hat, lse, need_grad_s,
                       need_grad_log_prior)
    else:
        out = reference.soft_quantize_backward(grad, z, codebook, s, s_mode, log_prior, z_hat, lse,
                                               need_grad_s, need_grad_log_prior)
    grad_z, grad_c, grad_s, grad_b = out
    # A custom op returns tensors only: an empty tensor stands for "not requested".
    return (grad_z, grad_c, grad_z.new_empty(0) if grad_s is None else grad_s,
            grad_z.new_empty(0) if grad_b is None else grad_b)


def _bwd_cpu(grad, z, codebook, s, s_mode, log_prior, z_hat, lse, need_grad_s, need_grad_log_prior):
    z, codebook, grad = z.float(), codebook.float(), grad.float()
    z_hat, lse = z_hat.contiguous(), lse.contiguous()
    n, d = z.shape
    k = codebook.shape[0]
    grad_z = torch.empty(n, d)
    grad_c = torch.empty(k, d)
    grad_s = torch.empty_like(s) if need_grad_s else None
    grad_b = torch.empty(k) if need_grad_log_prior else None
    if n == 0:
        grad_c.zero_()
        return grad_z, grad_c, None if grad_s is None else grad_s.zero_(), None if grad_b is None else grad_b.zero_()
    _backend.native.soft_quantize_backward_cpu(
        grad.data_ptr(), z.data_ptr(), codebook.data_ptr(), s.data_ptr(), s_mode, _ptr(log_prior),
        z_hat.data_ptr(), lse.data_ptr(), n, k, d, grad_z.data_ptr(),
        grad_c.data_ptr(), _ptr(grad_s), _ptr(grad_b))
    return grad_z, grad_c, grad_s, grad_b


@_soft_quantize_bwd.register_fake
def _(grad, z, codebook, s, s_mode, log_prior, z_hat, lse, backend, exact, need_grad_s,
      need_grad_log_prior):
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    return (z.new_empty(z.shape, dtype=acc), codebook.new_empty(codebook.shape, dtype=acc),
            s.new_empty(s.shape if need_grad_s else (0,), dtype=acc),
            z.new_empty((codebook.shape[0],) if need_grad_log_prior else (0,), dtype=acc))


def _setup_context(ctx, inputs, output):
    z, codebook, s, s_mode, log_prior, backend, exact = inputs
    ctx.s_mode, ctx.backend, ctx.exact, ctx.has_prior = s_mode, backend, exact, log_prior is not None
    ctx.save_for_backward(z, codebook, s, log_prior, *output)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_z_hat, grad_lse):
    # lse is an internal output (the wrapper drops it), so grad_lse is never used.
    z, codebook, s, log_prior, z_hat, lse = ctx.saved_tensors
    need_s, need_b = ctx.needs_input_grad[2], ctx.has_prior and ctx.needs_input_grad[4]
    grad_z, grad_c, grad_s, grad_b = torch.ops.latentops.soft_quantize_bwd(
        grad_z_hat, z, codebook, s, ctx.s_mode, log_prior, z_hat, lse, ctx.backend, ctx.exact,
        need_s, need_b)
    return (grad_z.to(z.dtype), grad_c.to(codebook.dtype), grad_s.to(s.dtype) if need_s else None,
            None, grad_b.to(log_prior.dtype) if need_b else None, None, None)


_soft_quantize_fwd.register_autograd(_backward, setup_context=_setup_context)
