"""Reference posterior-mean soft quantization (Wu & Flierl, AAAI 2020).

l_nk = −½·s_nk·‖z_n − c_k‖² + b_nk,  p_nk = softmax_k(l_nk),  ẑ_n = Σ_k p_nk c_k.

b is None, (K,) (the same for every row) or (N, K).

`s` is given in one of the kernels' layouts (latentops.kernel_enums.PrecisionLayout): SCALAR (1,),
PER_ROW (N,), PER_CENTROID (K,) or FULL (N, K).
Rows are processed in chunks, so memory is O(chunk · K), never O(N · K). Computes in float32
(float64 for float64 inputs), with z and C centred on the codebook mean so that data far from the
origin keeps its digits in the expanded ‖z‖² + ‖c‖² − 2 z·c.
"""

import torch

from latentops.kernel_enums import PrecisionLayout

_CHUNK_ELEMENTS = 1 << 22

SCALAR, PER_ROW, PER_CENTROID, FULL = PrecisionLayout


def _acc(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _chunks(n: int, k: int):
    rows = max(1, _CHUNK_ELEMENTS // max(k, 1))
    return [(start, min(n, start + rows)) for start in range(0, n, rows)]


def _s_rows(s: torch.Tensor, s_layout: int, start: int, stop: int) -> torch.Tensor:
    """s for rows start:stop, broadcastable to (rows, K)."""
    if s_layout == SCALAR:
        return s.reshape(1, 1)
    if s_layout == PER_ROW:
        return s[start:stop].unsqueeze(1)
    if s_layout == PER_CENTROID:
        return s.unsqueeze(0)
    return s[start:stop]


def _logits(z, c, c_sq, s, s_layout, log_prior, start, stop):
    zc = z[start:stop]
    dist = (zc.square().sum(1, keepdim=True) + c_sq - 2.0 * zc @ c.T).clamp_min_(0.0)
    logits = -0.5 * _s_rows(s, s_layout, start, stop) * dist
    if log_prior is not None:
        logits = logits + (log_prior[start:stop] if log_prior.dim() == 2 else log_prior)
    return logits, dist


def _centred(z, codebook):
    acc = _acc(z)
    c = codebook.to(acc)
    mean = c.mean(0)
    c = c - mean
    return z.to(acc) - mean, c, c.square().sum(1)


def soft_quantize_forward(z, codebook, s, s_layout, log_prior, accuracy="exact"):
    """z (N, D), codebook (K, D) -> (ẑ (N, D), lse (N,)) in float32 (float64 for float64 z).
    Always exact: `accuracy` has nothing to trade here."""
    acc = _acc(z)
    zc, c, c_sq = _centred(z, codebook)
    s, log_prior = s.to(acc), None if log_prior is None else log_prior.to(acc)
    n = z.shape[0]
    z_hat = torch.empty(n, z.shape[1], dtype=acc, device=z.device)
    lse = torch.empty(n, dtype=acc, device=z.device)
    for start, stop in _chunks(n, c.shape[0]):
        logits, _ = _logits(zc, c, c_sq, s, s_layout, log_prior, start, stop)
        lse[start:stop] = torch.logsumexp(logits, 1)
        z_hat[start:stop] = torch.softmax(logits, 1) @ codebook.to(acc)
    return z_hat, lse


def soft_quantize_backward(
    grad, z, codebook, s, s_layout, log_prior, z_hat, lse, accuracy, need_grad_s, need_grad_log_prior
):
    """Gradients of L with dL/dẑ = grad: (grad_z, grad_codebook, grad_s in s's layout or None,
    grad_log_prior or None), recomputing p = exp(l − lse) chunk by chunk."""
    acc = _acc(z)
    zc, c, c_sq = _centred(z, codebook)
    s, grad = s.to(acc), grad.to(acc)
    log_prior = None if log_prior is None else log_prior.to(acc)
    grad_z = torch.empty_like(zc)
    grad_c = torch.zeros_like(c)
    grad_s = torch.zeros_like(s) if need_grad_s else None
    grad_b = torch.zeros_like(log_prior) if need_grad_log_prior else None
    for start, stop in _chunks(z.shape[0], c.shape[0]):
        logits, dist = _logits(zc, c, c_sq, s, s_layout, log_prior, start, stop)
        p = torch.exp(logits - lse[start:stop].to(acc).unsqueeze(1))
        g = grad[start:stop]
        # dL/dl = p (g·c_k − g·ẑ) = p (g·c'_k − Σ_j p_j g·c'_j) with centred c': for data far from
        # the origin, g·c_k − g·ẑ would cancel away the digits that matter.
        gc = g @ c.T
        a = p * (gc - (p * gc).sum(1, keepdim=True))
        a_s = a * _s_rows(s, s_layout, start, stop)
        # −Σ_k a s (z − c) for z and +Σ_n a s (z − c) for c: shift-invariant, so centred z, c do.
        grad_z[start:stop] = -(a_s.sum(1, keepdim=True) * zc[start:stop] - a_s @ c)
        grad_c += p.T @ g + a_s.T @ zc[start:stop] - a_s.sum(0).unsqueeze(1) * c
        if grad_b is not None and grad_b.dim() == 2:
            grad_b[start:stop] = a
        elif grad_b is not None:
            grad_b += a.sum(0)
        if grad_s is not None:
            if s_layout in (SCALAR, PER_ROW):  # Σ_k a = 0: the same sums with far less cancellation
                dist = dist - (p * dist).sum(1, keepdim=True)
            ds = -0.5 * a * dist
            if s_layout == SCALAR:
                grad_s += ds.sum()
            elif s_layout == PER_ROW:
                grad_s[start:stop] = ds.sum(1)
            elif s_layout == PER_CENTROID:
                grad_s += ds.sum(0)
            else:
                grad_s[start:stop] = ds
    return grad_z, grad_c, grad_s, grad_b


def soft_assignments(z, codebook, s, s_layout, log_prior):
    """The (N, K) posterior p itself, for analysis and small problems (differentiable)."""
    zc, c, c_sq = _centred(z, codebook)
    acc = _acc(z)
    logits, _ = _logits(
        zc, c, c_sq, s.to(acc), s_layout, None if log_prior is None else log_prior.to(acc), 0, z.shape[0]
    )
    return torch.softmax(logits, 1)
