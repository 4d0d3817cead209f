"""Triton similarity-graph kernels (Latent Geometry Graphs, Laplacian Networks), one launch per
stage for all G graphs (the layers of a network: same n, own width d_g), packed into one flat
buffer with per-graph offsets.

Stage 1, `_similarity_kernel`: programs over (upper-triangle tile (bi ≤ bj), graph). Each sweeps
d in BLOCK_D chunks, accumulating the Gram tile X_bi X_bjᵀ with tl.dot and the rows' squared
norms on the same loads (norms fused: no separate pass over x), then maps the tile to W
(cosine: G_ij/(‖x_i‖‖x_j‖), 0 for zero rows; Gaussian: exp(−(‖x_i‖² + ‖x_j‖² − 2G_ij)/(2σ²)) on
x centred by the caller), zeroes the diagonal, applies the ReLU, and stores it at (bi, bj) and
mirrored at (bj, bi): half the Gram FLOPs, and W exactly symmetric (each pair's value is computed
once).

Backward, for dL/dX = α·acc − X·(β + γ·(X·acc)) per row with acc_i = Σ_e c_e x_{col_e} over the
row's CSR entries (≤ 2k for a k-NN graph):
  * `_spmm_kernel`: programs over (row, d chunk) gather BLOCK_E neighbour rows at a time and write
    acc and the chunk's partial x_i·acc;
  * `_row_terms_kernel`: the same grid finishes the rows in place.
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

from latentops.kernel_enums import GraphMetric

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_COSINE = tl.constexpr(int(GraphMetric.COSINE))


@triton.jit
def _similarity_kernel(
    x_ptr,
    off_ptr,
    dim_ptr,
    ti_ptr,
    tj_ptr,
    w_ptr,
    stats_ptr,
    n,
    neg_inv,
    METRIC: tl.constexpr,
    RELU: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0)
    g = tl.program_id(1)
    bi = tl.load(ti_ptr + t)
    bj = tl.load(tj_ptr + t)
    off = tl.load(off_ptr + g)
    d = tl.load(dim_ptr + g)
    rows_i = bi * BLOCK + tl.arange(0, BLOCK)
    rows_j = bj * BLOCK + tl.arange(0, BLOCK)
    mi = rows_i < n
    mj = rows_j < n
    a_rows = x_ptr + off + rows_i.to(tl.int64)[:, None] * d
    b_rows = x_ptr + off + rows_j.to(tl.int64)[:, None] * d
    offs_d = tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    sq_i = tl.zeros([BLOCK], dtype=tl.float32)
    sq_j = tl.zeros([BLOCK], dtype=tl.float32)
    for d0 in range(0, d, BLOCK_D):
        dd = d0 + offs_d
        dm = dd < d
        a = tl.load(a_rows + dd[None, :], mask=mi[:, None] & dm[None, :], other=0.0)
        b = tl.load(b_rows + dd[None, :], mask=mj[:, None] & dm[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
        sq_i += tl.sum(a * a, axis=1)
        sq_j += tl.sum(b * b, axis=1)
    if METRIC == _COSINE:
        r_i = tl.where(sq_i > 0, 1.0 / tl.sqrt(tl.where(sq_i > 0, sq_i, 1.0)), 0.0)
        r_j = tl.where(sq_j > 0, 1.0 / tl.sqrt(tl.where(sq_j > 0, sq_j, 1.0)), 0.0)
        w = acc * r_i[:, None] * r_j[None, :]
        stat = r_i
    else:
        dist = tl.maximum(sq_i[:, None] + sq_j[None, :] - 2.0 * acc, 0.0)
        w = tl.exp(dist * neg_inv)
        stat = sq_i
    w = tl.where(rows_i[:, None] == rows_j[None, :], 0.0, w)
    if RELU:
        w = tl.maximum(w, 0.0)
    # Entries with j ≥ i only, in both orientations: the diagonal tile's two halves would
    # otherwise come from two differently rounded Gram entries.
    keep = mi[:, None] & mj[None, :] & (rows_j[None, :] >= rows_i[:, None])
    base = w_ptr + g.to(tl.int64) * n * n
    tl.store(base + rows_i.to(tl.int64)[:, None] * n + rows_j[None, :], w, mask=keep)
    tl.store(base + rows_j.to(tl.int64)[None, :] * n + rows_i[:, None], w, mask=keep)
    if bi == bj:
        tl.store(stats_ptr + g * n + rows_i, stat, mask=mi)


@triton.jit
def _row_chunk(off_ptr, dim_ptr, n, BLOCK_D: tl.constexpr):
    """This program's row r of all G·n rows (i within its graph), column chunk c, its layer's
    width d and offset in the packed buffer, and the chunk's columns dd with their mask."""
    r = tl.program_id(0)
    c = tl.program_id(1)
    g = r // n
    d = tl.load(dim_ptr + g)
    dd = c * BLOCK_D + tl.arange(0, BLOCK_D)
    return r, c, r % n, d, tl.load(off_ptr + g), dd, dd < d


@triton.jit
def _spmm_kernel(
    x_ptr,
    off_ptr,
    dim_ptr,
    rowptr_ptr,
    col_ptr,
    coef_ptr,
    acc_ptr,
    dots_ptr,
    n,
    n_chunks,
    BLOCK_E: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    r, c, i, d, off, dd, dm = _row_chunk(off_ptr, dim_ptr, n, BLOCK_D)
    start = tl.load(rowptr_ptr + r)
    stop = tl.load(rowptr_ptr + r + 1)
    offs_e = tl.arange(0, BLOCK_E)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for e0 in range(start, stop, BLOCK_E):
        e = e0 + offs_e
        em = e < stop
        j = tl.load(col_ptr + e, mask=em, other=0)
        cf = tl.load(coef_ptr + e, mask=em, other=0.0)
        xj = tl.load(x_ptr + off + j[:, None] * d + dd[None, :], mask=em[:, None] & dm[None, :], other=0.0)
        acc += tl.sum(cf[:, None] * xj, axis=0)
    xi = tl.load(x_ptr + off + i.to(tl.int64) * d + dd, mask=dm, other=0.0)
    tl.store(acc_ptr + off + i.to(tl.int64) * d + dd, acc, mask=dm)
    tl.store(dots_ptr + r * n_chunks + c, tl.sum(xi * acc, axis=0))


@triton.jit
def _row_terms_kernel(
    x_ptr,
    off_ptr,
    dim_ptr,
    dots_ptr,
    alpha_ptr,
    beta_ptr,
    gamma_ptr,
    out_ptr,
    n,
    n_chunks,
    BLOCK_D: tl.constexpr,
    CHUNKS: tl.constexpr,
):
    r, _, i, d, off, dd, dm = _row_chunk(off_ptr, dim_ptr, n, BLOCK_D)
    oc = tl.arange(0, CHUNKS)
    dot = tl.sum(tl.load(dots_ptr + r * n_chunks + oc, mask=oc < n_chunks, other=0.0), axis=0)
    scale = tl.load(beta_ptr + r) + tl.load(gamma_ptr + r) * dot
    alpha = tl.load(alpha_ptr + r)
    ptr = off + i.to(tl.int64) * d + dd
    xi = tl.load(x_ptr + ptr, mask=dm, other=0.0)
    acc = tl.load(out_ptr + ptr, mask=dm, other=0.0)
    tl.store(out_ptr + ptr, alpha * acc - scale * xi, mask=dm)


def _device_guard(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _pack(xs: list[torch.Tensor]):
    """xs: (n, d) tensors, or (B, n, d) tensors standing for B graphs each. Returns one flat float32
    buffer, per-graph element offsets (int64) and widths (int32), each element's start in the
    buffer, and the widths as ints."""
    dev = xs[0].device
    flat = torch.cat([t.reshape(-1).float() for t in xs]) if len(xs) > 1 else xs[0].reshape(-1).float().contiguous()
    starts, offsets, widths, start = [], [], [], 0
    for t in xs:
        starts.append(start)
        per_graph = t.shape[-2] * t.shape[-1]
        for b in range(t.shape[0] if t.dim() == 3 else 1):
            offsets.append(start + b * per_graph)
            widths.append(t.shape[-1])
        start += t.numel()
    return (
        flat,
        torch.tensor(offsets, dtype=torch.int64, device=dev),
        torch.tensor(widths, dtype=torch.int32, device=dev),
        starts,
        widths,
    )


def similarity_graph_forward(
    xs: list[torch.Tensor], metric: str, sigma: float, relu: bool, *, precision: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """xs: contiguous float32 (n, d_g) tensors, or (B, n, d) tensors of B graphs each, on one
    device. Returns W (G, n, n) float32 with diagonal 0 and the row statistic (G, n): 1/‖x_i‖
    (cosine) or ‖x_i‖² (Gaussian).
    precision: tl.dot input precision for the Gram; default "ieee" under the interpreter and
    "tf32x3" on a GPU (fp32-accurate on tensor cores)."""
    n, dev = xs[0].shape[-2], xs[0].device
    g = sum(t.shape[0] if t.dim() == 3 else 1 for t in xs)
    w = torch.empty((g, n, n), dtype=torch.float32, device=dev)
    stats = torch.empty((g, n), dtype=torch.float32, device=dev)
    if n == 0:
        return w, stats
    if precision is None:
        precision = "ieee" if _INTERPRET else "tf32x3"
    flat, offsets, dims, _, _ = _pack(xs)
    block = 16 if _INTERPRET else 64
    block_d = 16 if _INTERPRET else 32
    nb = triton.cdiv(n, block)
    ti, tj = torch.triu_indices(nb, nb)
    ti, tj = ti.to(torch.int32).to(dev), tj.to(torch.int32).to(dev)
    with _device_guard(w):
        _similarity_kernel[(ti.numel(), g)](
            flat,
            offsets,
            dims,
            ti,
            tj,
            w,
            stats,
            n,
            -0.5 / (sigma * sigma),
            METRIC=int(GraphMetric[metric.upper()]),
            RELU=relu,
            PRECISION=precision,
            BLOCK=block,
            BLOCK_D=block_d,
            num_warps=4,
            num_stages=3,
        )
    return w, stats


def similarity_graph_sparse_backward(
    xs: list[torch.Tensor],
    rowptr: torch.Tensor,
    col: torch.Tensor,
    coef: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gamma: torch.Tensor,
) -> list[torch.Tensor]:
    """grad_x_g[i] = α·acc − x_i·(β + γ·(x_i·acc)), acc = Σ_e coef_e x_g[col_e] over row g·n + i's
    CSR entries (rowptr int64 (G·n + 1), col int64 local row indices). xs: (n, d) tensors or
    (B, n, d) tensors of B graphs each. Returns float32 gradients in the shapes of xs."""
    n = xs[0].shape[-2]
    flat, offsets, dims, starts, widths = _pack(xs)
    g = len(widths)
    out = torch.empty_like(flat)
    if n > 0:
        block_d = 32 if _INTERPRET else 256
        max_d = max(widths)
        n_chunks = triton.cdiv(max_d, block_d)
        dots = torch.zeros(g * n * n_chunks, dtype=torch.float32, device=flat.device)
        coef, alpha, beta, gamma = (t.float().contiguous() for t in (coef, alpha, beta, gamma))
        grid = (g * n, n_chunks)
        with _device_guard(flat):
            _spmm_kernel[grid](
                flat,
                offsets,
                dims,
                rowptr,
                col,
                coef,
                out,
                dots,
                n,
                n_chunks,
                BLOCK_E=8 if _INTERPRET else 16,
                BLOCK_D=block_d,
                num_warps=4,
            )
            _row_terms_kernel[grid](
                flat,
                offsets,
                dims,
                dots,
                alpha,
                beta,
                gamma,
                out,
                n,
                n_chunks,
                BLOCK_D=block_d,
                CHUNKS=max(2, triton.next_power_of_2(n_chunks)),
                num_warps=4,
            )
    grads = [out[s : s + t.numel()].view(t.shape) for s, t in zip(starts, xs)]
    # Separate storage per graph: a custom op's outputs may not alias one another.
    return grads if len(grads) == 1 else [t.clone() for t in grads]
