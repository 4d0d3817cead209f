"""Similarity graphs, Laplacians and label smoothness: the spec (Latent Geometry Graphs, Laplacian
Networks, graph knowledge distillation), and the pure-torch backend of the graph ops.

The spec, for one graph (x (n, d) flattened representations, dense float64, differentiable by
torch autograd):
  * similarity: cosine W_ij = x̂_i·x̂_j with rows L2-normalized (a zero row has similarity 0 and
    zero gradient), or Gaussian W_ij = exp(−‖x_i − x_j‖²/(2σ²)); the diagonal set to 0; optional
    ReLU (negative similarities to 0).
  * k-NN: keep the k largest entries of each row (the zeroed diagonal stays a candidate, as in
    the papers' code: it only wins over negative similarities), then symmetrize: "union" keeps W_ij
    wherever j is among i's neighbours or i among j's (the mask M ∨ Mᵀ), "mean" gives (A + Aᵀ)/2,
    "none" keeps the directed A. k ≥ n keeps every entry (the dense graph).
  * normalization (as scipy.sparse.csgraph): degrees d = row sums; "sym" D^{-1/2} W D^{-1/2}, "rw"
    D^{-1} W, with 1/d read as 0 for a node of degree ≤ 0.
  * Laplacian: the diagonal of W is ignored (as scipy does); L = D − W, or L = I' − normalized W
    with I' the identity restricted to nodes of positive degree (scipy's convention for isolated
    nodes).
  * smoothness: s = tr(Yᵀ L^m Y).

The torch backend (`similarity_graph_forward`, `similarity_graph_sparse_backward`, and
`dense_backward`, which every backend uses) computes the kernels' stages with the same contracts
as the C++, CUDA and Triton kernels. Their `xs` is a list of (n, d) tensors or (B, n, d) tensors
standing for B graphs each (`per_graph` lists the graphs, `regroup` undoes it).
"""

from __future__ import annotations

import warnings

import torch

METRICS = ("cosine", "gaussian")
SYMMETRIZE = ("union", "mean", "none")
NORMALIZE = (None, "none", "sym", "rw")


# ---------------------------------------------------------------------------------------------
# the spec (dense, one graph at a time)


def _pow2(e: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2**e, exactly, for integer e in dtype's normal exponent range (float32 [−126, 127], float64
    [−1022, 1023]): built from its bits, since torch.ldexp and pow round or overflow on the way."""
    if dtype == torch.float64:
        return torch.bitwise_left_shift(e.to(torch.int64) + 1023, 52).view(torch.float64)
    return torch.bitwise_left_shift(e.to(torch.int32) + 127, 23).view(torch.float32)


def times_pow2(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """x·2**e for float32/float64 x and integer e up to twice the exponent range (as when scaling a
    subnormal up to 1), in two exact steps: 2**e itself need not be representable."""
    half = torch.div(e, 2, rounding_mode="floor")
    return x * _pow2(half, x.dtype) * _pow2(e - half, x.dtype)


def scaled_rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., d) with each row times the power of two that brings its largest |entry| into [0.5, 1):
    cosine similarities do not change, and ‖x_i‖² can neither underflow (float32 rows of |x| ≲ 1e-19
    would read as zero rows) nor overflow (≳ 1e19). Zero and non-finite rows are left as they are.
    The scale is a constant for autograd (the cosine does not depend on it)."""
    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return x
    amax = x.detach().abs().amax(-1, keepdim=True)
    _, e = torch.frexp(torch.where(amax.isfinite(), amax, 0.0))
    return times_pow2(x, -e)


def inverse_norms(x: torch.Tensor) -> torch.Tensor:
    """1/‖x_i‖, and 0 for a zero row (differentiable, no NaN)."""
    norm = x.norm(dim=-1)
    return torch.where(norm > 0, 1.0 / torch.where(norm > 0, norm, 1.0), 0.0)


def similarity(x: torch.Tensor, metric: str = "cosine", sigma: float = 1.0, relu: bool = True) -> torch.Tensor:
    """Dense similarity W (n, n) of x (n, d): diagonal 0, negatives clamped if relu."""
    if metric == "cosine":
        x = scaled_rows(x)
        xh = x * inverse_norms(x).unsqueeze(-1)
        w = xh @ xh.transpose(-1, -2)
    else:
        sq = (x.unsqueeze(-2) - x.unsqueeze(-3)).square().sum(-1)
        w = torch.exp(-sq / (2.0 * sigma * sigma))
    w = w * (1.0 - torch.eye(x.shape[-2], dtype=w.dtype, device=w.device))
    return w.clamp_min(0.0) if relu else w


def knn(w: torch.Tensor, k: int | None, symmetrize: str = "union") -> torch.Tensor:
    """Keep the k largest entries per row of w (n, n), then symmetrize."""
    n = w.shape[-1]
    if k is None or k >= n:
        return w
    vals, idx = w.topk(k, dim=-1)
    a = torch.zeros_like(w).scatter(-1, idx, vals)
    if symmetrize == "none":
        return a
    if symmetrize == "mean":
        return (a + a.transpose(-1, -2)) / 2
    mask = torch.zeros_like(w, dtype=torch.bool).scatter(-1, idx, True)
    return torch.where(mask | mask.transpose(-1, -2), w, 0.0)


def _rsqrt_parts(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, h) with d^(−1/2) = q·2^h for finite d > 0, q in (0.7, 1.42] and h an integer; q = 0 for
    d ≤ 0 (1/d read as 0), q = 1 for a non-finite d (the caller makes those NaN). d^(−1/2) itself
    overflows float32 for a subnormal d, and the product r_i·r_j already for d ≲ 1e-39."""
    usable = (d > 0) & d.isfinite()
    safe = torch.where(usable, d, 1.0)
    _, e = torch.frexp(safe.detach())
    e = e - torch.bitwise_and(e, 1)  # even: d = m·2^e with m in [0.5, 2)
    m = times_pow2(safe, -e)  # exact, and the gradient flows through it
    q = torch.where(usable | ~d.isfinite(), m.rsqrt(), 0.0)
    return q, torch.div(-e, 2, rounding_mode="floor")


def sym_normalized(w: torch.Tensor, d_row: torch.Tensor, d_col: torch.Tensor) -> torch.Tensor:
    """w·d_row^(−1/2)·d_col^(−1/2) (0 where a degree is ≤ 0), never forming d^(−1/2) or its products
    themselves: exact powers of two carry the exponents. The power of two first (a subnormal w
    times q ~ 1 would round to the subnormal grid; scaled first, it is exact), then q_i·q_j as one
    factor, so a symmetric W stays exactly so."""
    q_row, h_row = _rsqrt_parts(d_row)
    q_col, h_col = _rsqrt_parts(d_col)
    return times_pow2(w, h_row + h_col) * (q_row * q_col)


def rw_normalized(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """w / d (0 where d ≤ 0): a division, since 1/d overflows for a subnormal degree."""
    positive = d > 0
    return torch.where(positive, w / torch.where(positive, d, 1.0), 0.0)


def normalized(w: torch.Tensor, mode: str | None) -> torch.Tensor:
    """D^{-1/2} W D^{-1/2} ("sym"), D^{-1} W ("rw") or W (None / "none"); d = row sums, 1/d read as 0
    for d ≤ 0. NaN policy: a row whose degree is not finite (it holds a NaN or ±inf, or its sum
    overflows) is NaN, and with "sym" so is its column; every other entry is exact even when degrees
    are subnormal."""
    if mode in (None, "none"):
        return w
    dtype = w.dtype
    if dtype not in (torch.float32, torch.float64):  # half degrees: computed in float32
        w = w.float()
    d = w.sum(-1)
    bad = ~d.isfinite()
    if mode == "sym":
        out = sym_normalized(w, d.unsqueeze(-1), d.unsqueeze(-2))
        bad = bad.unsqueeze(-1) | bad.unsqueeze(-2)
    else:
        out = rw_normalized(w, d.unsqueeze(-1))
        bad = bad.unsqueeze(-1)
    return torch.where(bad, torch.nan, out).to(dtype)


def laplacian(w: torch.Tensor, mode: str | None = None) -> torch.Tensor:
    """L of w (..., n, n), diagonal of w ignored: D − W, or I' − normalized W (see the module doc)."""
    n = w.shape[-1]
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    w = w * (1.0 - eye)
    d = w.sum(-1)
    if mode in (None, "none"):
        # the NaN policy of normalized(): a row with a non-finite degree is NaN
        return torch.where(d.isfinite().unsqueeze(-1), torch.diag_embed(d) - w, torch.nan)
    return torch.diag_embed((d > 0).to(w.dtype)) - normalized(w, mode)


def smoothness(
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int | None = None,
    power: int = 1,
    metric: str = "cosine",
    sigma: float = 1.0,
    relu: bool = True,
    symmetrize: str = "union",
    normalize: str | None = None,
) -> torch.Tensor:
    """tr(Yᵀ L^m Y) for one graph: x (n, d), labels (n, C) float."""
    lap = laplacian(knn(similarity(x, metric, sigma, relu), k, symmetrize), normalize)
    z = labels
    for _ in range(power):
        z = lap @ z
    return (labels * z).sum()


def similarity_graph(
    x: torch.Tensor,
    *,
    k: int | None = None,
    metric: str = "cosine",
    sigma: float = 1.0,
    relu: bool = True,
    symmetrize: str = "union",
    normalize: str | None = None,
) -> torch.Tensor:
    """The graph of one x (n, d): similarity, k-NN, symmetrization, normalization."""
    return normalized(knn(similarity(x, metric, sigma, relu), k, symmetrize), normalize)


# ---------------------------------------------------------------------------------------------
# the torch backend: the kernels' stages on a list of graphs (same n, any d per graph)


def per_graph(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """One (n, d) view per graph: a (B, n, d) element stands for B graphs."""
    return [g for t in xs for g in (t.unbind(0) if t.dim() == 3 else (t,))]


def regroup(graphs: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-graph (n, d) results back into the shapes of `like` (the inverse of per_graph)."""
    out, i = [], 0
    for t in like:
        if t.dim() == 3:
            out.append(torch.stack(graphs[i : i + t.shape[0]]))
            i += t.shape[0]
        else:
            out.append(graphs[i])
            i += 1
    return out


def similarity_graph_forward(
    xs: list[torch.Tensor], metric: str, sigma: float, relu: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: W (G, n, n) with diagonal 0 (ReLU'd if relu) and the per-row statistic (G, n):
    1/‖x_i‖ for cosine, ‖x_i‖² for Gaussian (x already centred by the caller)."""
    ws, stats = [], []
    for x in per_graph(xs):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        x = x.to(acc)
        gram = x @ x.T
        if metric == "cosine":
            r = inverse_norms(x)
            w = gram * r.unsqueeze(1) * r.unsqueeze(0)
            stats.append(r)
        else:
            sq = x.square().sum(1)
            dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * gram).clamp_min(0.0)
            w = torch.exp(dist * (-0.5 / (sigma * sigma)))
            stats.append(sq)
        w = torch.triu(w, 1)
        w = w + w.T  # exactly symmetric, like the kernels (a GEMM may round (i, j) and (j, i) apart)
        ws.append(w.clamp_min(0.0) if relu else w)
    return torch.stack(ws), torch.stack(stats)


def edge_coefficients(
    grad: torch.Tensor, values: torch.Tensor, metric: str, sigma: float, relu: bool, diagonal: torch.Tensor
) -> torch.Tensor:
    """dL/d(Gram entry) from dL/dW on the same entries: W's chain factor (ReLU, Gaussian) and zero
    on the diagonal (a constant). `diagonal` marks the diagonal entries."""
    coef = torch.where(diagonal, 0.0, grad)
    if metric == "cosine":
        return torch.where(values > 0, coef, 0.0) if relu else coef
    return coef * values / (sigma * sigma)


def backward_row_terms(metric: str, stats: torch.Tensor, row_coef_sum: torch.Tensor):
    """Per-row (α, β, γ) of grad_x_i = α_i·acc_i − x_i·(β_i + γ_i·(x_i·acc_i)), with
    acc_i = Σ_j c'_ij x_j the symmetric sparse (or dense) product of the edge coefficients:
    cosine: c' = c·r_j, α = r_i, γ = r_i³ (x̂'s projection); Gaussian: α = 1, β = Σ_j c_ij."""
    if metric == "cosine":
        return stats, torch.zeros_like(stats), stats.pow(3)
    return torch.ones_like(stats), row_coef_sum, torch.zeros_like(stats)


def sparse_rows(
    grad_vals: torch.Tensor,
    idx: torch.Tensor,
    vals: torch.Tensor,
    stats: torch.Tensor,
    metric: str,
    sigma: float,
    relu: bool,
):
    """The symmetric coefficient matrix C + Cᵀ of the k-NN backward in CSR over the G·n rows:
    (rowptr (G·n + 1) int64, col (nnz) int64 local row index, coef (nnz) acc dtype, α, β, γ (G·n))."""
    g, n, k = idx.shape
    rows = torch.arange(n, device=idx.device).view(1, n, 1).expand(g, n, k)
    coef = edge_coefficients(grad_vals, vals, metric, sigma, relu, idx == rows)
    base = (torch.arange(g, device=idx.device) * n).view(g, 1, 1)
    src = torch.cat([(rows + base).reshape(-1), (idx + base).reshape(-1)])
    dst_local = torch.cat([idx.reshape(-1), rows.reshape(-1)])
    dst_global = torch.cat([(idx + base).reshape(-1), (rows + base).reshape(-1)])
    both = torch.cat([coef.reshape(-1), coef.reshape(-1)])
    order = torch.argsort(src, stable=True)
    src, dst_local, dst_global, both = src[order], dst_local[order], dst_global[order], both[order]
    row_sum = torch.zeros(g * n, dtype=both.dtype, device=both.device).index_add_(0, src, both)
    stats_flat = stats.reshape(-1)
    if metric == "cosine":
        both = both * stats_flat[dst_global]  # c'_ij = c_ij / ‖x_j‖: products run on raw x
    counts = torch.bincount(src, minlength=g * n)
    rowptr = torch.zeros(g * n + 1, dtype=torch.int64, device=idx.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    alpha, beta, gamma = backward_row_terms(metric, stats_flat, row_sum)
    return rowptr, dst_local, both, alpha, beta, gamma


def similarity_graph_sparse_backward(
    xs: list[torch.Tensor], rowptr, col, coef, alpha, beta, gamma
) -> list[torch.Tensor]:
    """grad_x in the shapes of xs from the CSR of sparse_rows (torch backend)."""
    graphs = per_graph(xs)
    n = (rowptr.numel() - 1) // len(graphs)
    grads = []
    for gi, x in enumerate(graphs):
        acc_t = torch.float64 if x.dtype == torch.float64 else torch.float32
        x = x.to(acc_t)
        lo, hi = gi * n, (gi + 1) * n
        ptr = rowptr[lo : hi + 1]
        start, stop = int(ptr[0]), int(ptr[-1])
        with warnings.catch_warnings():  # "sparse CSR support is in beta": a product is all we use
            warnings.simplefilter("ignore", UserWarning)
            csr = torch.sparse_csr_tensor(
                ptr - start, col[start:stop], coef[start:stop].to(acc_t), size=(n, n), check_invariants=False
            )
            acc = csr @ x
        grads.append(_row_terms(x, acc, alpha[lo:hi], beta[lo:hi], gamma[lo:hi]))
    return regroup(grads, xs)


def _row_terms(x, acc, alpha, beta, gamma):
    dot = (x * acc).sum(1)
    return alpha.to(x.dtype).unsqueeze(1) * acc - x * (beta + gamma * dot).to(x.dtype).unsqueeze(1)


def dense_backward(
    grad_w: torch.Tensor,
    xs: list[torch.Tensor],
    w: torch.Tensor,
    stats: torch.Tensor,
    metric: str,
    sigma: float,
    relu: bool,
) -> list[torch.Tensor]:
    """grad_x in the shapes of xs from dL/dW (G, n, n): one (C + Cᵀ) X product per graph (a GEMM:
    torch's, on every backend)."""
    n = w.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=w.device)
    coef = edge_coefficients(grad_w.to(w.dtype), w, metric, sigma, relu, eye)
    coef = coef + coef.transpose(1, 2)
    row_sum = coef.sum(2)
    if metric == "cosine":
        coef = coef * stats.unsqueeze(1)
    alpha, beta, gamma = backward_row_terms(metric, stats, row_sum)
    grads = []
    for gi, x in enumerate(per_graph(xs)):
        x = x.to(w.dtype)
        grads.append(_row_terms(x, coef[gi] @ x, alpha[gi], beta[gi], gamma[gi]))
    return regroup(grads, xs)
