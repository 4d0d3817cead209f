"""Launchers of the soft-quantization kernels in latentops._C (see ops/soft_quantize.py for the
stages' contracts: N ≥ 1, s float32 in the layout s_layout names, log_prior float32 (K,) or None).
The keywords are the fields of SoftQuantizeForwardParams / SoftQuantizeBackwardParams in
csrc/include/latentops/soft_quantize.h."""

from __future__ import annotations

import torch

from latentops.kernel_enums import Accuracy, PrecisionLayout
from latentops.native import library


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _inputs(z, s, s_layout, log_prior, k, accuracy) -> dict:
    """The keywords of SoftQuantizeInputs but the codebook's."""
    n, d = z.shape
    return dict(
        z=z.data_ptr(),
        s=s.data_ptr(),
        log_prior=_ptr(log_prior),
        n=n,
        k=k,
        d=d,
        s_layout=PrecisionLayout(s_layout),
        accuracy=Accuracy[accuracy.upper()],
    )


def _centred_codebook(codebook: torch.Tensor):
    """(c − μ, ‖c − μ‖², μ) in float32, μ the codebook mean: the CUDA kernels' codebook."""
    mu = codebook.mean(0, dtype=torch.float64).to(torch.float32)
    c_centred = (codebook.float() - mu).contiguous()
    return c_centred, c_centred.double().square().sum(1).to(torch.float32), mu.contiguous()


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def soft_quantize_forward_cpu(z, codebook, s, s_layout, log_prior, accuracy):
    """Always exact (fp32 FMA): `accuracy` has nothing to trade here."""
    z, codebook = z.float().contiguous(), codebook.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    z_hat, lse = torch.empty(n, d, dtype=torch.float32), torch.empty(n, dtype=torch.float32)
    library.soft_quantize_forward_cpu(
        **_inputs(z, s, s_layout, log_prior, k, accuracy),
        codebook=codebook.data_ptr(),
        z_hat=z_hat.data_ptr(),
        lse=lse.data_ptr(),
    )
    return z_hat, lse


def soft_quantize_backward_cpu(
    grad, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, need_grad_s, need_grad_log_prior
):
    """z_hat is no operand of the kernel (see SoftQuantizeBackwardParams)."""
    z, codebook, grad = z.float().contiguous(), codebook.float().contiguous(), grad.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    grad_z, grad_c = torch.empty(n, d, dtype=torch.float32), torch.empty(k, d, dtype=torch.float32)
    grad_s = torch.empty_like(s) if need_grad_s else None
    grad_b = torch.empty(k, dtype=torch.float32) if need_grad_log_prior else None
    library.soft_quantize_backward_cpu(
        **_inputs(z, s, s_layout, log_prior, k, accuracy),
        codebook=codebook.data_ptr(),
        grad=grad.data_ptr(),
        lse=lse.contiguous().data_ptr(),
        grad_z=grad_z.data_ptr(),
        grad_codebook=grad_c.data_ptr(),
        grad_s=_ptr(grad_s),
        grad_log_prior=_ptr(grad_b),
    )
    return grad_z, grad_c, grad_s, grad_b


def soft_quantize_forward_cuda(z, codebook, s, s_layout, log_prior, accuracy):
    z = z.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    z_hat = torch.empty((n, d), dtype=torch.float32, device=z.device)
    lse = torch.empty(n, dtype=torch.float32, device=z.device)
    c_centred, c_sq, mu = _centred_codebook(codebook)
    with torch.cuda.device(z.device):
        library.soft_quantize_forward_cuda(
            **_inputs(z, s, s_layout, log_prior, k, accuracy),
            codebook=c_centred.data_ptr(),
            codebook_sq_norms=c_sq.data_ptr(),
            codebook_mean=mu.data_ptr(),
            z_hat=z_hat.data_ptr(),
            lse=lse.data_ptr(),
            stream=_stream(z),
        )
    return z_hat, lse


def soft_quantize_backward_cuda(
    grad, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, need_grad_s, need_grad_log_prior
):
    """z_hat is no operand of the kernel, and the CUDA kernels recompute lse."""
    z, grad = z.float().contiguous(), grad.float().contiguous()
    (n, d), k = z.shape, codebook.shape[0]
    # Every element of every output is written by the kernels (once: no accumulation into them).
    grad_z = torch.empty_like(z)
    grad_c = torch.empty((k, d), dtype=torch.float32, device=z.device)
    grad_b = torch.empty(k, dtype=torch.float32, device=z.device) if need_grad_log_prior else None
    grad_s = None
    if need_grad_s:  # the scalar layout gets per-row partial sums, summed below
        grad_s = torch.empty(n if s_layout == PrecisionLayout.SCALAR else s.shape, dtype=torch.float32, device=z.device)
    c_centred, c_sq, mu = _centred_codebook(codebook)
    workspace = torch.empty(4 * n, dtype=torch.float32, device=z.device)
    with torch.cuda.device(z.device):
        library.soft_quantize_backward_cuda(
            **_inputs(z, s, s_layout, log_prior, k, accuracy),
            codebook=c_centred.data_ptr(),
            codebook_sq_norms=c_sq.data_ptr(),
            codebook_mean=mu.data_ptr(),
            grad=grad.data_ptr(),
            lse=lse.data_ptr(),
            grad_z=grad_z.data_ptr(),
            grad_codebook=grad_c.data_ptr(),
            grad_s=_ptr(grad_s),
            grad_log_prior=_ptr(grad_b),
            workspace=workspace.data_ptr(),
            stream=_stream(z),
        )
    if need_grad_s and s_layout == PrecisionLayout.SCALAR:
        grad_s = grad_s.sum(dtype=torch.float64).to(torch.float32).reshape(s.shape)
    return grad_z, grad_c, grad_s, grad_b
