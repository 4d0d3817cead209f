"""latentops.similarity_graph, latentops.laplacian and latentops.graph_smoothness: the similarity
graphs of Latent Geometry Graphs / Laplacian Networks, from representations to label smoothness.

Where the work goes. For G graphs of n nodes (the layers of a network, or a batch of B
representation sets) the kernels run two stages, each one launch for all graphs:
  * forward (custom op latentops::similarity_graph_dense or ::similarity_graph_knn): row norms and
    the symmetric Gram tiles (j ≥ i only: half the FLOPs), mapped to W (cosine with ReLU, or
    Gaussian), diagonal 0; the k-NN op then keeps the top k per row (torch.topk over the G·n rows
    of W, one launch) and returns only (values, indices): W itself is not kept.
  * backward: with k-NN the loss depends on the kept entries only, so dL/dX̂ = (C + Cᵀ)X̂ with C
    holding ≤ k entries per row: a sparse product, O(n·k·d) instead of a dense n×n×d GEMM, fused
    with the norm backward. The dense op (k=None) uses one GEMM per graph (torch's, every backend).
Everything after the edge weights (ops/graph_edges.py: symmetrization, degrees, normalization,
L^m Y, smoothness) is O(G·n·k·C) torch code on the edge list, identical for every backend.
"""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.native import graph as native
from latentops.ops import graph_edges
from latentops.ops.checks import check_choice, check_int, check_tensor
from latentops.ops.graph_inputs import check_graph_options, graph_count, graph_inputs, label_matrix
from latentops.ops.registration import Stage
from latentops.reference import graph as reference

KERNELS = _backend.Kernels(
    "graph ops",
    stages={
        "forward": {
            "cuda": native.similarity_graph_forward_cuda,
            "triton": _backend.triton_kernel("graph", "similarity_graph_forward"),
            "cpu": native.similarity_graph_forward_cpu,
            "torch": reference.similarity_graph_forward,
        },
        "sparse_backward": {
            "cuda": native.similarity_graph_sparse_backward_cuda,
            "triton": _backend.triton_kernel("graph", "similarity_graph_sparse_backward"),
            "cpu": native.similarity_graph_sparse_backward_cpu,
            "torch": reference.similarity_graph_sparse_backward,
        },
    },
    dtypes=_backend.KERNEL_AND_REFERENCE_DTYPES,
    # The CUDA kernel failed on an H200 (benches/results/h200-2026-11-30.md: 5e-4 relative error
    # at d = 65536): CUDA tensors use Triton, which passed, unless backend="cuda" is named.
    used_only_when_named=("cuda",),
)

# ---------------------------------------------------------------------------------------------
# public API


def similarity_graph(
    x,
    *,
    k: int | None = None,
    metric: str = "cosine",
    sigma: float = 1.0,
    relu: bool = True,
    symmetrize: str = "union",
    normalize: str | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """The similarity graph W of each set of representations.

    Args:
        x: (n, d) or (B, n, d) float tensor, or a list of (n, ...) tensors (layers of one batch:
            same n, any feature shape, flattened).
        k: keep the k largest similarities per row (None: dense; k ≥ n keeps everything).
        metric: "cosine" (rows L2-normalized; a zero row has similarity 0; any nonzero row, however
            tiny or large, gets its true cosine) or "gaussian" (exp(−‖x_i − x_j‖²/(2σ²))).
        sigma: the Gaussian width (> 0).
        relu: a bool: clamp negative similarities to 0 (cosine).
        symmetrize: "union" (keep W_ij if j is a neighbour of i or i of j), "mean" ((A + Aᵀ)/2)
            or "none" (directed).
        normalize: None / "none", "sym" (D^{-1/2} W D^{-1/2}) or "rw" (D^{-1} W).
        backend: "cuda" (used only when named: it failed its GPU tests), "triton", "cpu" or
            "torch"; None picks. A named backend that cannot run the call is a ValueError.

    Returns:
        (n, n) for x (n, d); (B, n, n) for x (B, n, d); (L, n, n) for a list of L layers; float32
        (float64 for float64 inputs). Differentiable with respect to x (the k-NN selection is a
        constant mask).

    NaN/inf policy (every backend, no sync): a graph whose x holds a NaN or ±inf is NaN throughout;
    the other graphs of a batch or list are unaffected. Finite x gives finite W (Gaussian: while
    the centred ‖x_i‖² stay below the dtype's maximum, ~1e38 in float32), and the normalizations
    stay exact for subnormal degrees; their gradients are then finite too, and unspecified for a
    non-finite x.
    """
    xs, kind, n = graph_inputs(x)
    k = check_graph_options(k, metric, sigma, symmetrize, normalize, relu)
    finite = _finite_graphs(xs)
    xs, chosen = _prepare(xs, metric, backend)
    if k is None or k >= n:
        w, _ = _dense(xs, metric, float(sigma), relu, chosen)
    else:
        vals, idx, _ = _knn(xs, k, metric, float(sigma), relu, chosen)
        w = graph_edges.dense_graph(vals, idx, symmetrize)
    w = torch.where(finite.view(-1, 1, 1), reference.normalized(w, normalize), torch.nan)
    return w[0] if kind == "single" else w


def normalize_graph(w: torch.Tensor, normalize: str | None) -> torch.Tensor:
    """D^{-1/2} W D^{-1/2} ("sym"), D^{-1} W ("rw") or W (None / "none") for w (..., n, n), with
    d = row sums and 1/d read as 0 for a node of degree ≤ 0. Differentiable.

    NaN/inf policy: a row whose degree is not finite (it holds a NaN or ±inf, or its sum
    overflows) is NaN, and with "sym" its column too; every other entry is finite and exact, also
    for subnormal degrees. None / "none" returns W as it is."""
    _check_square("W", w)
    check_choice("normalize", normalize, reference.NORMALIZE)
    return reference.normalized(w, normalize)


def laplacian(w: torch.Tensor, normalize: str | None = None) -> torch.Tensor:
    """L = D − W, or I' − D^{-1/2} W D^{-1/2} ("sym"), or I' − D^{-1} W ("rw"), for w (..., n, n).

    d = row sums; the diagonal of w is ignored and I' is the identity restricted to nodes of
    positive degree, as in scipy.sparse.csgraph.laplacian. Differentiable.

    NaN/inf policy: as normalize_graph's, for every mode: a row of w with a non-finite degree
    (off the diagonal) is NaN in L, with "sym" its column too; the rest is finite and exact, also
    for subnormal degrees."""
    _check_square("W", w)
    check_choice("normalize", normalize, reference.NORMALIZE)
    return reference.laplacian(w, normalize)


def graph_smoothness(
    x,
    labels: torch.Tensor,
    *,
    k: int | None = None,
    power: int = 1,
    metric: str = "cosine",
    sigma: float = 1.0,
    relu: bool = True,
    symmetrize: str = "union",
    normalize: str | None = None,
    num_classes: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Label smoothness s = tr(Yᵀ L^m Y) on the similarity graph of x, fused from representations
    to s: W is never kept (with k-NN) and L never formed.

    Args:
        x: as for similarity_graph: (n, d), (B, n, d) or a list of (n, ...) layers.
        labels: Y: (n, C) float (one-hot or soft) for every graph, (G, n, C) float per graph (G =
            B or the number of layers), or (n,) integer classes (one-hot with num_classes classes;
            inferred from the data if None, which torch.compile(fullgraph=True) cannot trace).
        power: m ≥ 1.
        num_classes: None or an int ≥ 1 (integer labels must lie in [0, num_classes); checked
            by value, one device-to-host sync for CUDA labels, skipped under torch.compile).
        the rest: as for similarity_graph.

    Returns:
        s: a scalar for x (n, d), (B,) for (B, n, d), (L,) for a list of L layers. Differentiable
        with respect to x and float labels.

    NaN/inf policy: s is NaN for a graph whose x, or whose float labels, hold a NaN or ±inf; the
    other graphs are unaffected; finite inputs give a finite s (within similarity_graph's limits).
    """
    xs, kind, n = graph_inputs(x)
    k = check_graph_options(k, metric, sigma, symmetrize, normalize, relu)
    check_int("power", power)
    y = label_matrix(labels, n, graph_count(xs), xs[0].device, num_classes)
    finite = _finite_graphs(xs) & y.isfinite().flatten(1).all(1)
    xs, chosen = _prepare(xs, metric, backend)
    g = graph_count(xs)
    y = y.to(xs[0].dtype).expand(g, n, y.shape[-1])
    if k is None or k >= n:
        w, _ = _dense(xs, metric, float(sigma), relu, chosen)
        lap = reference.laplacian(w, normalize)
        z = y
        for _ in range(power):
            z = lap @ z
        s = (y * z).sum((1, 2))
    else:
        vals, idx, _ = _knn(xs, k, metric, float(sigma), relu, chosen)
        s = graph_edges.edge_smoothness(vals, idx, y, symmetrize, normalize, power)
    s = torch.where(finite, s, torch.nan)
    return s[0] if kind == "single" else s


def _check_square(name: str, w) -> None:
    check_tensor(name, w)
    if w.dim() < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"{name} must be (..., n, n) with square last dimensions, got shape {tuple(w.shape)}")


def _finite_graphs(xs: list[torch.Tensor]) -> torch.Tensor:
    """(G,) bool: whether every value of each graph's x is finite (the NaN policy's test)."""
    return torch.cat([t.isfinite().reshape(t.shape[0] if t.dim() == 3 else 1, -1).all(1) for t in xs])


def _prepare(xs: list[torch.Tensor], metric: str, backend: str | None):
    """The stages' inputs (float32, or float64 for the torch backend) and the backend to run."""
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in xs) else torch.float32
    chosen = KERNELS.resolve(backend, xs[0].device, dtype)
    xs = [t.to(dtype) for t in xs]
    if metric == "gaussian":  # distances are shift-invariant; centring keeps the Gram form's digits
        xs = [t - t.mean(-2, keepdim=True) for t in xs]
    else:  # cosines are scale-invariant per row; scaled rows keep ‖x‖² clear of under- and overflow
        xs = [reference.scaled_rows(t) for t in xs]
    return xs, chosen


def _acc(xs) -> torch.dtype:
    return torch.float64 if xs[0].dtype == torch.float64 else torch.float32


def _forward(xs, metric, sigma, relu, backend):
    if xs[0].shape[-2] == 0:
        backend = "torch"
    return KERNELS.run("forward", backend, [t.contiguous() for t in xs], metric, sigma, relu)


# ---------------------------------------------------------------------------------------------
# stage: dense graph (k=None), backward through one GEMM per graph


def _dense_impl(
    xs: list[torch.Tensor], metric: str, sigma: float, relu: bool, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(xs, metric, sigma, relu, backend)


def _dense_fake(xs, metric, sigma, relu, backend):
    g, n = graph_count(xs), xs[0].shape[-2]
    return xs[0].new_empty((g, n, n), dtype=_acc(xs)), xs[0].new_empty((g, n), dtype=_acc(xs))


def _dense_backward_impl(
    grad_w: torch.Tensor,
    xs: list[torch.Tensor],
    w: torch.Tensor,
    stats: torch.Tensor,
    metric: str,
    sigma: float,
    relu: bool,
    backend: str,
) -> list[torch.Tensor]:
    return reference.dense_backward(grad_w.contiguous(), [t.contiguous() for t in xs], w, stats, metric, sigma, relu)


def _dense_backward_fake(grad_w, xs, w, stats, metric, sigma, relu, backend):
    return [t.new_empty(t.shape, dtype=w.dtype) for t in xs]


def _dense_setup(ctx, inputs, output):
    xs, metric, sigma, relu, backend = inputs
    ctx.args = (metric, sigma, relu, backend)
    ctx.n_inputs = len(xs)
    ctx.save_for_backward(*xs, *output)
    ctx.mark_non_differentiable(output[1])


def _dense_backward(ctx, grad_w, _grad_stats):
    saved = ctx.saved_tensors
    xs, (w, stats) = list(saved[: ctx.n_inputs]), saved[ctx.n_inputs :]
    grads = _dense_backward_stage(grad_w, xs, w, stats, *ctx.args)
    return [gr.to(x.dtype) for gr, x in zip(grads, xs)], None, None, None, None


_dense_backward_stage = Stage("similarity_graph_dense_backward", _dense_backward_impl, _dense_backward_fake)
_dense = Stage("similarity_graph_dense", _dense_impl, _dense_fake, setup_context=_dense_setup, backward=_dense_backward)


# ---------------------------------------------------------------------------------------------
# stage: k-NN graph (top k per row), backward through the sparse product over the kept entries


def _knn_impl(
    xs: list[torch.Tensor], k: int, metric: str, sigma: float, relu: bool, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w, stats = _forward(xs, metric, sigma, relu, backend)
    vals, idx = w.topk(k, dim=-1)
    return vals, idx, stats


def _knn_fake(xs, k, metric, sigma, relu, backend):
    g, n, acc = graph_count(xs), xs[0].shape[-2], _acc(xs)
    return (
        xs[0].new_empty((g, n, k), dtype=acc),
        xs[0].new_empty((g, n, k), dtype=torch.int64),
        xs[0].new_empty((g, n), dtype=acc),
    )


def _knn_backward_impl(
    grad_vals: torch.Tensor,
    xs: list[torch.Tensor],
    idx: torch.Tensor,
    vals: torch.Tensor,
    stats: torch.Tensor,
    metric: str,
    sigma: float,
    relu: bool,
    backend: str,
) -> list[torch.Tensor]:
    csr = reference.sparse_rows(grad_vals.to(vals.dtype), idx, vals, stats, metric, sigma, relu)
    return KERNELS.run("sparse_backward", backend, [t.contiguous() for t in xs], *csr)


def _knn_backward_fake(grad_vals, xs, idx, vals, stats, metric, sigma, relu, backend):
    return [t.new_empty(t.shape, dtype=vals.dtype) for t in xs]


def _knn_setup(ctx, inputs, output):
    xs, _, metric, sigma, relu, backend = inputs
    ctx.args = (metric, sigma, relu, backend)
    ctx.n_inputs = len(xs)
    vals, idx, stats = output
    ctx.save_for_backward(*xs, vals, idx, stats)
    ctx.mark_non_differentiable(idx, stats)


def _knn_backward(ctx, grad_vals, _grad_idx, _grad_stats):
    saved = ctx.saved_tensors
    xs, (vals, idx, stats) = list(saved[: ctx.n_inputs]), saved[ctx.n_inputs :]
    grads = _knn_backward_stage(grad_vals, xs, idx, vals, stats, *ctx.args)
    return [gr.to(x.dtype) for gr, x in zip(grads, xs)], None, None, None, None, None


_knn_backward_stage = Stage("similarity_graph_knn_backward", _knn_backward_impl, _knn_backward_fake)
_knn = Stage("similarity_graph_knn", _knn_impl, _knn_fake, setup_context=_knn_setup, backward=_knn_backward)
