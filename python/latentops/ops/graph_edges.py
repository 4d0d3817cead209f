"""The k-NN graph as an edge list, from the per-row top k to label smoothness: symmetrization,
degrees, normalization and L^m Y applied as c ⊙ Z − A Z, never forming L. O(G·n·k·C) torch code,
the same for every backend and differentiated by autograd."""

from __future__ import annotations

import torch

from latentops.reference import graph as reference


def _graph_base(g: int, n: int, device) -> torch.Tensor:
    return (torch.arange(g, device=device) * n).view(g, 1)


# index_add adds atomically on a GPU, and CUDA's float32 atomics flush subnormals to zero: a
# subnormal similarity (a Gaussian weight exp(−t) with t ≈ 88…103) would vanish from W and from
# the degrees. There the sum runs scaled by 2^64 (exact, a power of two; |w| ≤ 1 keeps it finite).
_SUBNORMAL_SCALE = 2.0**64


def _sum_at(size: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """out[index[e]] += values[e], subnormal values included, on any device."""
    scale = _SUBNORMAL_SCALE if values.device.type == "cuda" and values.dtype != torch.float64 else 1.0
    out = torch.zeros(size, dtype=values.dtype, device=values.device).index_add(0, index, values * scale)
    return out / scale if scale != 1.0 else out


def edges(vals: torch.Tensor, idx: torch.Tensor, symmetrize: str):
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


def dense_graph(vals: torch.Tensor, idx: torch.Tensor, symmetrize: str) -> torch.Tensor:
    """W (G, n, n) of the symmetrized k-NN graph."""
    g, n, _ = idx.shape
    rows, cols, weights = edges(vals, idx, symmetrize)
    flat = (rows + _graph_base(g, n, rows.device)) * n + cols
    return _sum_at(g * n * n, flat.reshape(-1), weights.reshape(-1)).view(g, n, n)


def edge_smoothness(vals, idx, y, symmetrize, normalize, power):
    """tr(Yᵀ L^m Y) per graph from the k-NN edges, L applied as c ⊙ Z − A Z (never formed)."""
    g, n, _ = idx.shape
    rows, cols, w = edges(vals, idx, symmetrize)
    base = _graph_base(g, n, idx.device)
    rows_g, cols_g = (rows + base).reshape(-1), (cols + base).reshape(-1)
    w = w.reshape(-1)
    deg = _sum_at(g * n, rows_g, w)
    if normalize in (None, "none"):
        diag, a = deg, w
    else:
        diag = (deg > 0).to(w.dtype)
        if normalize == "sym":
            a = reference.sym_normalized(w, deg[rows_g], deg[cols_g])
        else:
            a = reference.rw_normalized(w, deg[rows_g])
    y_flat = y.reshape(g * n, -1)
    z = y_flat
    for _ in range(power):
        az = torch.zeros_like(z).index_add(0, rows_g, a.unsqueeze(1) * z[cols_g])
        z = diag.unsqueeze(1) * z - az
    return (y_flat * z).reshape(g, -1).sum(1)
