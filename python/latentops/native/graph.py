"""Launchers of the similarity-graph kernels in latentops._C (see ops/graph.py for the stages'
contracts). xs is a list of float32 (n, d) tensors or (B, n, d) tensors of B graphs each: the
kernels take one table of per-graph addresses and widths, so no input is packed or copied. The
keywords are the fields of SimilarityGraphParams / SimilarityGraphBackwardParams in
csrc/include/latentops/graph.h."""

from __future__ import annotations

import torch

from latentops.kernel_enums import GraphMetric
from latentops.native import library
from latentops.reference.graph import per_graph


def _addresses(ts: list[torch.Tensor], device) -> torch.Tensor:
    return torch.tensor([t.data_ptr() for t in ts], dtype=torch.int64).to(device)


def _widths(ts: list[torch.Tensor], device) -> torch.Tensor:
    return torch.tensor([t.shape[1] for t in ts], dtype=torch.int64).to(device)


def _similarity(xs, metric, sigma, relu, launch, **device_args):
    graphs = per_graph(xs)
    g, n = len(graphs), graphs[0].shape[0]
    device = graphs[0].device
    w = torch.empty((g, n, n), dtype=torch.float32, device=device)
    stats = torch.empty((g, n), dtype=torch.float32, device=device)
    ptrs, dims = _addresses(graphs, device), _widths(graphs, device)
    launch(
        xs=ptrs.data_ptr(),
        dims=dims.data_ptr(),
        g=g,
        n=n,
        metric=GraphMetric[metric.upper()],
        sigma=float(sigma),
        relu=bool(relu),
        w=w.data_ptr(),
        stats=stats.data_ptr(),
        **device_args,
    )
    return w, stats


def _sparse_backward(xs, rowptr, col, coef, alpha, beta, gamma, launch, **device_args):
    device = xs[0].device
    grads = [torch.empty(t.shape, dtype=torch.float32, device=device) for t in xs]
    graphs, grad_graphs = per_graph(xs), per_graph(grads)
    g, n = len(graphs), graphs[0].shape[0]
    coef, alpha, beta, gamma = (t.float().contiguous() for t in (coef, alpha, beta, gamma))
    ptrs, out_ptrs, dims = _addresses(graphs, device), _addresses(grad_graphs, device), _widths(graphs, device)
    launch(
        xs=ptrs.data_ptr(),
        dims=dims.data_ptr(),
        g=g,
        n=n,
        rowptr=rowptr.data_ptr(),
        col=col.data_ptr(),
        coef=coef.data_ptr(),
        alpha=alpha.data_ptr(),
        beta=beta.data_ptr(),
        gamma=gamma.data_ptr(),
        grads=out_ptrs.data_ptr(),
        **device_args,
    )
    return grads


def similarity_graph_forward_cpu(xs, metric, sigma, relu):
    return _similarity(xs, metric, sigma, relu, library.similarity_graph_cpu)


def similarity_graph_sparse_backward_cpu(xs, rowptr, col, coef, alpha, beta, gamma):
    return _sparse_backward(xs, rowptr, col, coef, alpha, beta, gamma, library.similarity_graph_sparse_backward_cpu)


def similarity_graph_forward_cuda(xs, metric, sigma, relu):
    with torch.cuda.device(xs[0].device):
        return _similarity(
            xs, metric, sigma, relu, library.similarity_graph_cuda, stream=torch.cuda.current_stream().cuda_stream
        )


def similarity_graph_sparse_backward_cuda(xs, rowptr, col, coef, alpha, beta, gamma):
    with torch.cuda.device(xs[0].device):
        return _sparse_backward(
            xs,
            rowptr,
            col,
            coef,
            alpha,
            beta,
            gamma,
            library.similarity_graph_sparse_backward_cuda,
            stream=torch.cuda.current_stream().cuda_stream,
        )
