"""Latent-geometry losses on the graph ops: graph knowledge distillation (Lassance et al., ICASSP
2020), the Laplacian Networks smoothness-variation regularizer (Lassance, Gripon, Ortega) and a
label-geometry target for the output layer. Every layer's graph comes from one call of the ops
(one kernel launch per stage for all layers).

Non-finite inputs: a NaN or ±inf anywhere in a loss's inputs (representations, teacher, float
labels) makes the loss NaN, on every backend. These losses have no state, so nothing is poisoned
beyond the step; a NaN loss is what a finite-loss check (or a GradScaler) needs to skip it. No row
is dropped silently: a graph without one of its nodes is another graph. The check is explicit
(one reduction per input, no host sync) because a kernel may read a NaN similarity as 0 and
return a finite, wrong loss; the gradients of such a step are not guaranteed finite."""

from __future__ import annotations

import torch
from torch import nn

from latentops import _backend
from latentops.ops import graph as graph_ops
from latentops.ops.checks import check_bool, check_choice, check_int, check_real
from latentops.ops.graph_inputs import check_graph_options, label_matrix


def _as_layers(x, name: str) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)) and len(x) > 0:
        return list(x)
    raise ValueError(f"{name} must be a tensor or a non-empty list of (n, ...) tensors, got {type(x).__name__}")


class _GraphOptions(nn.Module):
    """The graph options every loss shares, checked at construction (a bad one would otherwise
    surface only at the first forward, or not at all)."""

    def __init__(self, k, metric, sigma, relu, symmetrize, normalize, backend):
        super().__init__()
        k = check_int("k", k, optional=True)
        sigma = check_real("sigma", sigma, minimum=0.0, open_minimum=True)
        check_graph_options(k, metric, sigma, symmetrize, normalize)
        relu = check_bool("relu", relu)
        # Which backends can run is known only per call (device, dtype); the name is known now.
        check_choice("backend", backend, _backend.BACKEND_NAMES, optional=True)
        self.k, self.metric, self.sigma, self.relu = k, metric, sigma, relu
        self.symmetrize, self.normalize, self.backend = symmetrize, normalize, backend

    def graph_options(self) -> dict:
        return dict(
            metric=self.metric, sigma=self.sigma, relu=self.relu, symmetrize=self.symmetrize, backend=self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, metric={self.metric!r}, sigma={self.sigma}, relu={self.relu}, "
            f"symmetrize={self.symmetrize!r}, normalize={self.normalize!r}"
        )


class GraphDistillationLoss(_GraphOptions):
    """Σ over layers of ‖Â_T^p − Â_S^p‖²_F (mean over the n² entries with reduction="mean"),
    Â the (k-NN, normalized) similarity graph of a layer's representations of the batch.

    The teacher's graphs are detached. With teacher_mask=True (and k set) both graphs keep the
    teacher's k-NN edges (union- or otherwise symmetrized as `symmetrize` says) instead of each
    its own, so the student is asked to match the teacher's neighbourhoods' weights.

    forward(student, teacher): each a tensor (n, ...) or a list of L layers' (n, ...) tensors
    (same n across both lists; widths may differ between student and teacher).
    A NaN/±inf in any input makes the loss NaN (see the module docstring)."""

    def __init__(
        self,
        *,
        k: int | None = None,
        power: int = 1,
        teacher_mask: bool = False,
        metric: str = "cosine",
        sigma: float = 1.0,
        relu: bool = True,
        symmetrize: str = "union",
        normalize: str | None = None,
        reduction: str = "sum",
        backend: str | None = None,
    ):
        super().__init__(k, metric, sigma, relu, symmetrize, normalize, backend)
        power = check_int("power", power)
        check_choice("reduction", reduction, ("sum", "mean"))
        teacher_mask = check_bool("teacher_mask", teacher_mask)
        if teacher_mask and k is None:
            raise ValueError("teacher_mask=True needs k (the teacher's k-NN graph gives the mask)")
        self.power, self.teacher_mask, self.reduction = power, teacher_mask, reduction

    def forward(self, student, teacher) -> torch.Tensor:
        student, teacher = _as_layers(student, "student"), _as_layers(teacher, "teacher")
        if len(student) != len(teacher):
            raise ValueError(f"student and teacher must have as many layers: got {len(student)} and {len(teacher)}")
        opts = self.graph_options()
        with torch.no_grad():
            if self.teacher_mask:
                w_t = graph_ops.similarity_graph([t.detach() for t in teacher], **opts)
                mask = _knn_mask(w_t, self.k, self.symmetrize)
                a_t = graph_ops.normalize_graph(w_t * mask, self.normalize)
            else:
                a_t = graph_ops.similarity_graph(
                    [t.detach() for t in teacher], k=self.k, normalize=self.normalize, **opts
                )
        if self.teacher_mask:
            w_s = graph_ops.similarity_graph(student, **opts)
            a_s = graph_ops.normalize_graph(w_s * mask.to(w_s.dtype), self.normalize)
        else:
            a_s = graph_ops.similarity_graph(student, k=self.k, normalize=self.normalize, **opts)
        if a_s.shape[-1] != a_t.shape[-1]:
            raise ValueError(
                f"student and teacher must have the same n: got graphs {tuple(a_s.shape)} and {tuple(a_t.shape)}"
            )
        if self.power > 1:
            a_s, a_t = torch.linalg.matrix_power(a_s, self.power), torch.linalg.matrix_power(a_t, self.power)
        diff = (a_t.to(a_s.dtype) - a_s).square().sum((1, 2))
        if self.reduction == "mean":
            diff = diff / max(a_s.shape[-1] ** 2, 1)
        return _nan_unless_finite(diff.sum(), student, teacher)


def _nan_unless_finite(loss: torch.Tensor, *inputs) -> torch.Tensor:
    """loss, or NaN when any value of the inputs (tensors or lists of them) is not finite."""
    tensors = [t for x in inputs for t in (x if isinstance(x, (list, tuple)) else [x])]
    finite = torch.stack([torch.isfinite(t).all() for t in tensors if isinstance(t, torch.Tensor)]).all()
    return torch.where(finite, loss, float("nan"))


def _knn_mask(w: torch.Tensor, k: int, symmetrize: str) -> torch.Tensor:
    """The k-NN support of w (G, n, n), symmetrized as a mask ("none" keeps it directed)."""
    n = w.shape[-1]
    if k >= n:
        return torch.ones_like(w, dtype=torch.bool)
    mask = torch.zeros_like(w, dtype=torch.bool).scatter(-1, w.topk(k, dim=-1).indices, True)
    return mask if symmetrize == "none" else mask | mask.transpose(-1, -2)


class SmoothnessVariationLoss(_GraphOptions):
    """The Laplacian Networks regularizer: the mean over consecutive layers of |s_l − s_{l−1}|,
    s_l = tr(Yᵀ L_l^m Y) the label smoothness on layer l's similarity graph (0 for one layer).

    forward(layers, labels): layers a list of L (n, ...) tensors (or (L, n, d)); labels (n, C)
    float, or (n,) integer classes (num_classes fixed at construction for torch.compile).
    A NaN/±inf in any input makes the loss NaN (see the module docstring)."""

    def __init__(
        self,
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
    ):
        super().__init__(k, metric, sigma, relu, symmetrize, normalize, backend)
        self.power = check_int("power", power)
        self.num_classes = check_int("num_classes", num_classes, optional=True)

    def smoothness(self, layers, labels) -> torch.Tensor:
        """s_l for every layer, (L,)."""
        if isinstance(layers, torch.Tensor) and layers.dim() == 2:
            layers = [layers]
        s = graph_ops.graph_smoothness(
            layers,
            labels,
            k=self.k,
            power=self.power,
            normalize=self.normalize,
            num_classes=self.num_classes,
            **self.graph_options(),
        )
        return s.reshape(-1)

    def forward(self, layers, labels) -> torch.Tensor:
        s = self.smoothness(layers, labels)
        if s.numel() < 2:
            return _nan_unless_finite(s.sum() * 0.0, layers, labels)
        return _nan_unless_finite((s[1:] - s[:-1]).abs().mean(), layers, labels)


class GeometryTargetLoss(_GraphOptions):
    """‖Â(output) − Â(target)‖²_F for one layer (usually the output): the target geometry is the
    cosine graph of the label vectors, 1 between examples of one class and 0 elsewhere for one-hot
    labels (soft labels: the cosine of their label distributions), normalized like Â(output).

    forward(output (n, ...), labels (n, C) float / (n,) integer).
    A NaN/±inf in any input makes the loss NaN (see the module docstring)."""

    def __init__(
        self,
        *,
        k: int | None = None,
        metric: str = "cosine",
        sigma: float = 1.0,
        relu: bool = True,
        symmetrize: str = "union",
        normalize: str | None = None,
        num_classes: int | None = None,
        reduction: str = "sum",
        backend: str | None = None,
    ):
        super().__init__(k, metric, sigma, relu, symmetrize, normalize, backend)
        check_choice("reduction", reduction, ("sum", "mean"))
        self.num_classes = check_int("num_classes", num_classes, optional=True)
        self.reduction = reduction

    def forward(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(output, torch.Tensor) and output.dim() > 2:
            output = output.flatten(1)
        a = graph_ops.similarity_graph(output, k=self.k, normalize=self.normalize, **self.graph_options())
        n = a.shape[-1]
        y = label_matrix(labels, n, 1, a.device, self.num_classes)[0].to(a.dtype)
        with torch.no_grad():
            target = graph_ops.similarity_graph(
                y, metric="cosine", relu=True, normalize=self.normalize, backend=self.backend
            )
        diff = (a - target.to(a.dtype)).square().sum()
        return _nan_unless_finite(diff / max(n * n, 1) if self.reduction == "mean" else diff, output, labels)
