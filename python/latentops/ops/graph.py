"""latentops.similarity_graph, latentops.laplacian and latentops.graph_smoothness: the similarity
graphs of Latent Geometry Graphs / Laplacian Networks, from representations to label smoothness.

Where the work goes. For G graphs of n nodes (the layers of a network, or a batch of B
representation sets) the kernels run two stages, each one launch for all graphs:
  * stage 1 (custom op latentops::similarity_graph_dense or ::similarity_graph_knn): row norms and
    the symmetric Gram tiles (j ≥ i only: half the FLOPs), mapped to W (cosine with ReLU, or
    Gaussian), diagonal 0; the k-NN op then keeps the top k per row (torch.topk over the G·n rows
    of W, one launch) and returns only (values, indices): W itself is not kept.
  * backward: with k-NN the loss depends on the kept entries only, so dL/dX̂ = (C + Cᵀ)X̂ with C
    holding ≤ k entries per row: a sparse product, O(n·k·d) instead of a dense n×n×d GEMM, fused
    with the norm backward. The dense op (k=None) uses one GEMM per graph.
Everything after the edge weights (symmetrization, degrees, normalization, L^m Y, smoothness) is
O(G·n·k·C) torch code on the edge list, differentiated by autograd, identical for every backend.
"""

from __future__ import annotations

import torch

from latentops import _backend
from latentops.ops._checks import check_choice, check_same_device, check_tensor
from latentops.reference import graph as reference

# Backends with a graph kernel. The CUDA kernels compile but have never run on a GPU, so they
# are used only when asked for by name (backend="cuda"); CUDA tensors default to Triton.
IMPLEMENTED = ("cuda", "triton", "cpu", "torch")
EXPLICIT_ONLY = ("cuda",)

# ---------------------------------------------------------------------------------------------
# public API


def similarity_graph(x, *, k: int | None = None, metric: str = "cosine", sigma: float = 1.0,
                     relu: bool = True, symmetrize: str = "union", normalize: str | None = None,
                     backend: str | None = None) -> torch.Tensor:
    """The similarity graph W of each set of representations.

    Args:
        x: (n, d) or (B, n, d) float tensor, or a list of (n, ...) tensors (layers of one batch:
            same n, any feature shape, flattened).
        k: keep the k largest similarities per row (None: dense; k ≥ n keeps everything).
        metric: "cosine" (rows L2-normalized; a zero row has similarity 0) or "gaussian"
            (exp(−‖x_i − x_j‖²/(2σ²))).
        sigma: the Gaussian width (> 0).
        relu: clamp negative similarities to 0 (cosine).
        symmetrize: "union" (keep W_ij if j is a neighbour of i or i of j), "mean" ((A + Aᵀ)/2)
            or "none" (directed).
        normalize: None / "none", "sym" (D^{-1/2} W D^{-1/2}) or "rw" (D^{-1} W).
        backend: "cuda" (explicit only, unvalidated), "triton", "cpu" or "torch"; None picks.

    Returns:
        (n, n) for x (n, d); (B, n, n) for x (B, n, d); (L, n, n) for a list of L layers; float32
        (float64 for float64 inputs). Differentiable with respect to x (the k-NN selection is a
        constant mask).
    """
    xs, _kind, n = _graphs(x)
    k = _check_graph_args(k, metric, sigma, symmetrize, normalize)
    xs, chosen = _prepare(xs, metric, backend)
    if k is None or k >= n:
        w, _ = torch.ops.latentops.similarity_graph_dense(xs, metric, float(sigma), relu, chosen)
    else:
        vals, idx, _ = torch.ops.latentops.similarity_graph_knn(xs, k, metric, float(sigma), relu, chosen)
        rows, cols, weights = _edges(vals, idx, symmetrize)
        g = vals.shape[0]
        flat = (rows + _graph_base(g, n, rows.device)) * n + cols
        w = torch.zeros(g * n * n, dtype=weights.dtype, device=weights.device).index_add(
            0, flat.reshape(-1), weights.reshape(-1)).view(g, n, n)
    w = reference.normalized(w, normalize)
    return w[0] if _kind == "single" else w


def laplacian(w: torch.Tensor, normalize: str | None = None) -> torch.Tensor:
    """L = D − W, or I' − D^{-1/2} W D^{-1/2} ("sym"), or I' − D^{-1} W ("rw"), for w (..., n, n).

    d = row sums; the diagonal of w is ignored and I' is the identity restricted to nodes of
    positive degree, as in scipy.sparse.csgraph.laplacian. Differentiable."""
    check_tensor("W", w)
    if w.dim() < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"W must be (..., n, n) with square last dimensions, got shape {tuple(w.shape)}")
    check_choice("normalize", normalize, reference.NORMALIZE)
    return reference.laplacian(w, normalize)


def graph_smoothness(x, labels: torch.Tensor, *, k: int | None = None, power: int = 1,
                     metric: str = "cosine", sigma: float = 1.0, relu: bool = True,
                     symmetrize: str = "union", normalize: str | None = None,
                     num_classes: int | None = None, backend: str | None = None) -> torch.Tensor:
    """Label smoothness s = tr(Yᵀ L^m Y) on the similarity graph of x, fused from representations
    to s: W is never kept (with k-NN) and L never formed.

    Args:
        x: as for similarity_graph: (n, d), (B, n, d) or a list of (n, ...) layers.
        labels: Y: (n, C) float (one-hot or soft) for every graph, (G, n, C) float per graph (G =
            B or the number of layers), or (n,) integer classes (one-hot with num_classes classes;
            inferred from the data if None, which torch.compile(fullgraph=True) cannot trace).
        power: m ≥ 1.
        the rest: as for similarity_graph.

    Returns:
        s: a scalar for x (n, d), (B,) for (B, n, d), (L,) for a list of L layers. Differentiable
        with respect to x and float labels.
    """
    xs, kind, n = _graphs(x)
    k = _check_graph_args(k, metric, sigma, symmetrize, normalize)
    if isinstance(power, bool) or not isinstance(power, int) or power < 1:
        raise ValueError(f"power must be an integer ≥ 1, got {power!r}")
    y = _labels(labels, n, _count(xs), xs[0].device, num_classes)
    xs, chosen = _prepare(xs, metric, backend)
    g = _count(xs)
    y = y.to(torch.float64 if xs[0].dtype == torch.float64 else torch.float32).expand(g, n, y.shape[-1])
    if k is None or k >= n:
        w, _ = torch.ops.latentops.similarity_graph_dense(xs, metric, float(sigma), relu, chosen)
        lap = reference.laplacian(w, normalize)
        z = y
        for _ in range(power):
            z = lap @ z
        s = (y * z).sum((1, 2))
    else:
        vals, idx, _ = torch.ops.latentops.similarity_graph_knn(xs, k, metric, float(sigma), relu, chosen)
        s = _edge_smoothness(vals, idx, y, symmetrize, normalize, power)
    return s[0] if kind == "single" else s


# ---------------------------------------------------------------------------------------------
# validation and preparation


def _graphs(x) -> tuple[list[torch.Tensor], str, int]:
    """The graphs' representations as a list of (n, d_l) tensors or one (B, n, d) tensor (B graphs:
    kept whole, so that its gradient needs no stacking), the input kind and n."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError("x must be a non-empty list of (n, ...) tensors, got an empty list")
        for i, t in enumerate(x):
            check_tensor(f"x[{i}]", t)
            if t.dim() < 2:
                raise ValueError(f"x[{i}] must be (n, ...) with at least 2 dimensions, got shape {tuple(t.shape)}")
        check_same_device(**{f"x[{i}]": t for i, t in enumerate(x)})
        n = x[0].shape[0]
        for i, t in enumerate(x):
            if t.shape[0] != n:
                raise ValueError(f"every layer must have the same n (rows): x[0] has n = {n}, "
                                 f"x[{i}] has shape {tuple(t.shape)}")
        xs, kind = [t.reshape(n, -1) for t in x], "list"
    else:
        check_tensor("x", x)
        if x.dim() == 2:
            xs, kind = [x], "single"
        elif x.dim() == 3:
            xs, kind = [x], "batch"
            if x.shape[0] == 0:
                raise ValueError(f"x (B, n, d) must have B ≥ 1, got shape {tuple(x.shape)}")
        else:
            raise ValueError(f"x must be (n, d), (B, n, d) or a list of (n, ...) tensors, got shape {tuple(x.shape)}")
        n = x.shape[-2]
    for i, t in enumerate(xs):
        if t.shape[-1] == 0:
            raise ValueError(f"x must have at least one feature per row, got shape {tuple(t.shape)}"
                             + (f" for x[{i}]" if kind == "list" else ""))
    return xs, kind, n


def _count(xs: list[torch.Tensor]) -> int:
    """Number of graphs: a (B, n, d) element stands for B of them."""
    return sum(t.shape[0] if t.dim() == 3 else 1 for t in xs)


def _split(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """One (n, d) view per graph."""
    return [g for t in xs for g in (t.unbind(0) if t.dim() == 3 else (t,))]


def _regroup(per_graph: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-graph (n, d) results back into the shapes of `like` (the inverse of _split)."""
    out, i = [], 0
    for t in like:
        if t.dim() == 3:
            out.append(torch.stack(per_graph[i:i + t.shape[0]]))
            i += t.shape[0]
        else:
            out.append(per_graph[i])
            i += 1
    return out


def _check_graph_args(k, metric, sigma, symmetrize, normalize) -> int | None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be None or an integer ≥ 1, got {k!r}")
    check_choice("metric", metric, reference.METRICS)
    check_choice("symmetrize", symmetrize, reference.SYMMETRIZE)
    check_choice("normalize", normalize, reference.NORMALIZE)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
    return k


def _labels(labels, n: int, g: int, device, num_classes) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    check_same_device(x=torch.empty(0, device=device), labels=labels)
    if not labels.is_floating_point():
        if labels.dtype == torch.bool or labels.is_complex() or labels.dim() != 1:
            raise TypeError(f"integer labels must be (n,) class indices, got {labels.dtype} of shape {tuple(labels.shape)}")
        if labels.shape[0] != n:
            raise ValueError(f"labels must have n = {n} entries (one per row of x), got shape {tuple(labels.shape)}")
        onehot = torch.nn.functional.one_hot(labels.long(), -1 if num_classes is None else num_classes)
        return onehot.unsqueeze(0)
    if labels.dim() == 2 and labels.shape[0] == n:
        return labels.unsqueeze(0)
    if labels.dim() == 3 and labels.shape[:2] == (g, n):
        return labels
    raise ValueError(f"labels must be (n, C) = ({n}, C), ({g}, {n}, C) or (n,) integer classes for "
                     f"x with n = {n} rows and {g} graph(s), got shape {tuple(labels.shape)}")


def _prepare(xs: list[torch.Tensor], metric: str, backend: str | None):
    """The kernels' inputs (float32, or float64 on the torch backend) and the backend to run."""
    device = xs[0].device
    if any(t.dtype == torch.float64 for t in xs):
        xs = [t.double() for t in xs]
        chosen = "torch"
        if backend is not None:  # still validate the name and its availability
            _backend.resolve(backend, device, implemented=IMPLEMENTED, op="graph ops")
    else:
        xs = [t.float() for t in xs]
        chosen = _backend.resolve(backend, device, implemented=IMPLEMENTED, op="graph ops",
                                  explicit_only=EXPLICIT_ONLY)
    if metric == "gaussian":  # distances are shift-invariant; centring keeps the Gram form's digits
        xs = [t - t.mean(-2, keepdim=True) for t in xs]
    if xs[0].shape[-2] == 0:
        chosen = "torch"
    return xs, chosen


def _graph_base(g: int, n: int, device) -> torch.Tensor:
    return (torch.arange(g, device=device) * n).view(g, 1)


def _edges(vals: torch.Tensor, idx: torch.Tensor, symmetrize: str):
    """(rows, cols, weights), each (G, E), of the symmetrized k-NN graph from the per-row top k."""
    g, n, k = idx.shape
    rows = torch.arange(n, device=idx.device).view(1, n, 1).expand(g, n, k)
    if symmetrize == "none":
        return rows.reshape(g, -1), idx.reshape(g, -1), vals.reshape(g, -1)
    all_rows = torch.cat([rows.reshape(g, -1), idx.reshape(g, -1)], 1)
    all_cols = torch.cat([idx.reshape(g, -1), rows.reshape(g, -1)], 1)
    if symmetrize == "mean":
        half = vals.reshape(g, -1) * 0.5
        return all_rows, all_cols, torch.cat([half, half], 1)
    # union: the reverse copy of i → j is dropped when j → i is itself kept (it is then listed
    # with j's neighbours, with the same value: W is symmetric).
    mask = torch.zeros(g, n, n, dtype=torch.bool, device=idx.device).scatter(2, idx, True)
    mutual = mask.transpose(1, 2).gather(2, idx)
    reverse = torch.where(mutual, 0.0, vals)
    return all_rows, all_cols, torch.cat([vals.reshape(g, -1), reverse.reshape(g, -1)], 1)


def _edge_smoothness(vals, idx, y, symmetrize, normalize, power):
    """tr(Yᵀ L^m Y) per graph from the k-NN edges, L applied as c ⊙ Z − A Z (never formed)."""
    g, n, _ = idx.shape
    rows, cols, w = _edges(vals, idx, symmetrize)
    base = _graph_base(g, n, idx.device)
    rows_g, cols_g = (rows + base).reshape(-1), (cols + base).reshape(-1)
    w = w.reshape(-1)
    deg = torch.zeros(g * n, dtype=w.dtype, device=w.device).index_add(0, rows_g, w)
    if normalize in (None, "none"):
        diag, a = deg, w
    else:
        diag = (deg > 0).to(w.dtype)
        if normalize == "sym":
            r = reference.inverse_power(deg, -0.5)
            a = w * r[rows_g] * r[cols_g]
        else:
            a = w * reference.inverse_power(deg, -1.0)[rows_g]
    y_flat = y.reshape(g * n, -1)
    z = y_flat
    for _ in range(power):
        az = torch.zeros_like(z).index_add(0, rows_g, a.unsqueeze(1) * z[cols_g])
        z = diag.unsqueeze(1) * z - az
    return (y_flat * z).reshape(g, -1).sum(1)


# ---------------------------------------------------------------------------------------------
# custom ops: stage 1 (+ top-k) and the backward


def _acc(xs):
    return torch.float64 if xs[0].dtype == torch.float64 else torch.float32


def _stage1(xs, metric, sigma, relu, backend):
    xs = _split(xs)
    if backend == "cpu":
        return _cpu_similarity(xs, metric, sigma, relu)
    if backend == "triton":
        return _backend.triton_kernels.graph.similarity_forward(xs, metric, sigma, relu)
    if backend == "cuda":
        return _cuda_similarity(xs, metric, sigma, relu)
    return reference.similarity_matrix(xs, metric, sigma, relu)


@torch.library.custom_op("latentops::similarity_graph_dense", mutates_args=())
def _similarity_dense(xs: list[torch.Tensor], metric: str, sigma: float, relu: bool,
                      backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs = [t.contiguous() for t in xs]
    return _stage1(xs, metric, sigma, relu, backend)


@_similarity_dense.register_fake
def _(xs, metric, sigma, relu, backend):
    g, n = _count(xs), xs[0].shape[-2]
    return xs[0].new_empty((g, n, n), dtype=_acc(xs)), xs[0].new_empty((g, n), dtype=_acc(xs))


@torch.library.custom_op("latentops::similarity_graph_dense_bwd", mutates_args=())
def _similarity_dense_bwd(grad_w: torch.Tensor, xs: list[torch.Tensor], w: torch.Tensor,
                          stats: torch.Tensor, metric: str, sigma: float, relu: bool,
                          backend: str) -> list[torch.Tensor]:
    # A dense (C + Cᵀ)X is a GEMM per graph: torch's matmul on every backend.
    xs = [t.contiguous() for t in xs]
    return _regroup(reference.dense_backward(grad_w.contiguous(), _split(xs), w, stats, metric, sigma, relu), xs)


@_similarity_dense_bwd.register_fake
def _(grad_w, xs, w, stats, metric, sigma, relu, backend):
    return [t.new_empty(t.shape, dtype=w.dtype) for t in xs]


def _dense_setup(ctx, inputs, output):
    xs, metric, sigma, relu, backend = inputs
    ctx.args = (metric, sigma, relu, backend)
    ctx.n_inputs = len(xs)
    ctx.save_for_backward(*xs, *output)
    ctx.mark_non_differentiable(output[1])


def _dense_backward(ctx, grad_w, _grad_stats):
    saved = ctx.saved_tensors
    xs, (w, stats) = list(saved[:ctx.n_inputs]), saved[ctx.n_inputs:]
    grads = torch.ops.latentops.similarity_graph_dense_bwd(grad_w, xs, w, stats, *ctx.args)
    return [gr.to(x.dtype) for gr, x in zip(grads, xs)], None, None, None, None


_similarity_dense.register_autograd(_dense_backward, setup_context=_dense_setup)


@torch.library.custom_op("latentops::similarity_graph_knn", mutates_args=())
def _similarity_knn(xs: list[torch.Tensor], k: int, metric: str, sigma: float, relu: bool,
                    backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w, stats = _stage1([t.contiguous() for t in xs], metric, sigma, relu, backend)
    vals, idx = w.topk(k, dim=-1)
    return vals, idx, stats


@_similarity_knn.register_fake
def _(xs, k, metric, sigma, relu, backend):
    g, n = _count(xs), xs[0].shape[-2]
    acc = _acc(xs)
    return (xs[0].new_empty((g, n, k), dtype=acc), xs[0].new_empty((g, n, k), dtype=torch.int64),
            xs[0].new_empty((g, n), dtype=acc))


@torch.library.custom_op("latentops::similarity_graph_knn_bwd", mutates_args=())
def _similarity_knn_bwd(grad_vals: torch.Tensor, xs: list[torch.Tensor], idx: torch.Tensor,
                        vals: torch.Tensor, stats: torch.Tensor, metric: str, sigma: float,
                        relu: bool, backend: str) -> list[torch.Tensor]:
    xs = [t.contiguous() for t in xs]
    csr = reference.sparse_rows(grad_vals.to(vals.dtype), idx, vals, stats, metric, sigma, relu)
    if backend == "cpu":
        return _cpu_sparse_backward(xs, *csr)
    if backend == "triton":
        return _backend.triton_kernels.graph.sparse_backward(xs, *csr)
    if backend == "cuda":
        return _cuda_sparse_backward(xs, *csr)
    return _regroup(reference.sparse_backward(_split(xs), *csr), xs)


@_similarity_knn_bwd.register_fake
def _(grad_vals, xs, idx, vals, stats, metric, sigma, relu, backend):
    return [t.new_empty(t.shape, dtype=vals.dtype) for t in xs]


def _knn_setup(ctx, inputs, output):
    xs, k, metric, sigma, relu, backend = inputs
    ctx.args = (metric, sigma, relu, backend)
    ctx.n_inputs = len(xs)
    vals, idx, stats = output
    ctx.save_for_backward(*xs, vals, idx, stats)
    ctx.mark_non_differentiable(idx, stats)


def _knn_backward(ctx, grad_vals, _grad_idx, _grad_stats):
    saved = ctx.saved_tensors
    xs, (vals, idx, stats) = list(saved[:ctx.n_inputs]), saved[ctx.n_inputs:]
    grads = torch.ops.latentops.similarity_graph_knn_bwd(grad_vals, xs, idx, vals, stats, *ctx.args)
    return [gr.to(x.dtype) for gr, x in zip(grads, xs)], None, None, None, None, None


_similarity_knn.register_autograd(_knn_backward, setup_context=_knn_setup)


# ---------------------------------------------------------------------------------------------
# native launchers (latentops._C: raw addresses, one call for all graphs)


def _pointer_table(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([t.data_ptr() for t in ts], dtype=torch.int64)


def _dims(xs) -> torch.Tensor:
    return torch.tensor([t.shape[1] for t in xs], dtype=torch.int64)


_METRIC_CODES = {"cosine": 0, "gaussian": 1}


def _cpu_similarity(xs, metric, sigma, relu):
    g, n = len(xs), xs[0].shape[0]
    w = torch.empty((g, n, n), dtype=torch.float32)
    stats = torch.empty((g, n), dtype=torch.float32)
    ptrs, dims = _pointer_table(xs), _dims(xs)
    _backend.native.similarity_graph_cpu(ptrs.data_ptr(), dims.data_ptr(), g, n, _METRIC_CODES[metric],
                                         float(sigma), bool(relu), w.data_ptr(), stats.data_ptr())
    return w, stats


def _cpu_sparse_backward(xs, rowptr, col, coef, alpha, beta, gamma):
    grads = [torch.empty(t.shape, dtype=torch.float32) for t in xs]
    xs_g, grads_g = _split(xs), _split(grads)
    g, n = len(xs_g), xs_g[0].shape[0]
    coef, alpha, beta, gamma = (t.float().contiguous() for t in (coef, alpha, beta, gamma))
    ptrs, out_ptrs, dims = _pointer_table(xs_g), _pointer_table(grads_g), _dims(xs_g)
    _backend.native.similarity_graph_sparse_backward_cpu(
        ptrs.data_ptr(), dims.data_ptr(), g, n, rowptr.data_ptr(), col.data_ptr(), coef.data_ptr(),
        alpha.data_ptr(), beta.data_ptr(), gamma.data_ptr(), out_ptrs.data_ptr())
    return grads


def _cuda_similarity(xs, metric, sigma, relu):
    g, n = len(xs), xs[0].shape[0]
    dev = xs[0].device
    w = torch.empty((g, n, n), dtype=torch.float32, device=dev)
    stats = torch.empty((g, n), dtype=torch.float32, device=dev)
    ptrs, dims = _pointer_table(xs).to(dev), _dims(xs).to(dev)
    with torch.cuda.device(dev):
        _backend.native.similarity_graph_cuda(
            ptrs.data_ptr(), dims.data_ptr(), g, n, _METRIC_CODES[metric],
            float(sigma), bool(relu), w.data_ptr(), stats.data_ptr(), torch.cuda.current_stream().cuda_stream)
    return w, stats


def _cuda_sparse_backward(xs, rowptr, col, coef, alpha, beta, gamma):
    dev = xs[0].device
    grads = [torch.empty(t.shape, dtype=torch.float32, device=dev) for t in xs]
    xs_g, grads_g = _split(xs), _split(grads)
    g, n = len(xs_g), xs_g[0].shape[0]
    coef, alpha, beta, gamma = (t.float().contiguous() for t in (coef, alpha, beta, gamma))
    ptrs, out_ptrs, dims = _pointer_table(xs_g).to(dev), _pointer_table(grads_g).to(dev), _dims(xs_g).to(dev)
    with torch.cuda.device(dev):
        _backend.native.similarity_graph_sparse_backward_cuda(
            ptrs.data_ptr(), dims.data_ptr(), g, n, rowptr.data_ptr(),
            col.data_ptr(), coef.data_ptr(), alpha.data_ptr(), beta.data_ptr(), gamma.data_ptr(),
            out_ptrs.data_ptr(), torch.cuda.current_stream().cuda_stream)
    return grads
