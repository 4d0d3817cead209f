"""Validation and normalization of the graph ops' inputs: representations, options and labels.
Public, so that the graph losses of latentops.nn check their arguments the same way."""

from __future__ import annotations

import math

import torch

from latentops.ops.checks import check_choice, check_int, check_same_device, check_tensor
from latentops.reference import graph as reference


def graph_inputs(x) -> tuple[list[torch.Tensor], str, int]:
    """x as the graph stages take it: a list of (n, d_l) tensors, or of one (B, n, d) tensor (B
    graphs, kept whole so that its gradient needs no stacking); plus the input's kind ("single",
    "batch" or "list") and n."""
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
                raise ValueError(
                    f"every layer must have the same n (rows): x[0] has n = {n}, x[{i}] has shape {tuple(t.shape)}"
                )
        # the feature count spelled out: reshape(0, -1) cannot infer it for an empty layer
        xs, kind = [t.reshape(n, math.prod(t.shape[1:])) for t in x], "list"
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
            raise ValueError(
                f"x must have at least one feature per row, got shape {tuple(t.shape)}"
                + (f" for x[{i}]" if kind == "list" else "")
            )
    return xs, kind, n


def graph_count(xs: list[torch.Tensor]) -> int:
    """Number of graphs: a (B, n, d) element stands for B of them."""
    return sum(t.shape[0] if t.dim() == 3 else 1 for t in xs)


def check_graph_options(k, metric, sigma, symmetrize, normalize, relu=True) -> int | None:
    """The options every graph op and loss shares; returns k."""
    check_int("k", k, optional=True)
    if not isinstance(relu, bool):
        raise TypeError(f"relu must be a bool, got {relu!r}")
    check_choice("metric", metric, reference.METRICS)
    check_choice("symmetrize", symmetrize, reference.SYMMETRIZE)
    check_choice("normalize", normalize, reference.NORMALIZE)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
    return k


def label_matrix(labels, n: int, g: int, device, num_classes: int | None) -> torch.Tensor:
    """Y as (1, n, C) (shared by every graph) or (G, n, C) from (n, C) / (G, n, C) float labels or
    (n,) integer classes (one-hot with num_classes classes, inferred from the data if None)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    check_same_device(x=torch.empty(0, device=device), labels=labels)
    check_int("num_classes", num_classes, optional=True)
    if not labels.is_floating_point():
        if labels.dtype == torch.bool or labels.is_complex() or labels.dim() != 1:
            raise TypeError(
                f"integer labels must be (n,) class indices, got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if labels.shape[0] != n:
            raise ValueError(f"labels must have n = {n} entries (one per row of x), got shape {tuple(labels.shape)}")
        if labels.numel() == 0 and num_classes is None:
            raise ValueError("num_classes must be given for empty integer labels (no class to infer it from)")
        # Checked by value (one device-to-host sync for a CUDA tensor; inferring num_classes syncs
        # anyway); skipped while torch.compile traces, where a data-dependent branch breaks the graph.
        if labels.numel() and not torch.compiler.is_compiling():
            low, high = labels.min().item(), labels.max().item()
            if low < 0:
                raise ValueError(f"labels must be class indices ≥ 0, got {low}")
            if num_classes is not None and high >= num_classes:
                raise ValueError(f"labels must be < num_classes = {num_classes}, got {high}")
        onehot = torch.nn.functional.one_hot(labels.long(), -1 if num_classes is None else num_classes)
        return onehot.unsqueeze(0)
    if labels.dim() == 2 and labels.shape[0] == n:
        return labels.unsqueeze(0)
    if labels.dim() == 3 and labels.shape[:2] == (g, n):
        return labels
    raise ValueError(
        f"labels must be (n, C) = ({n}, C), ({g}, {n}, C) or (n,) integer classes for "
        f"x with n = {n} rows and {g} graph(s), got shape {tuple(labels.shape)}"
    )
