"""Label smoothness of every layer's k-NN cosine graph, forward and backward timed apart: latentops' backends
against the torch dense path of the anchor (../shared/anchors/gpu_anchors.py), with the anchor's
graph (no ReLU, mean symmetrization, L = D − W), every row checked against the float64 reference."""

from __future__ import annotations

import torch

import latentops
from harness import Case, check_close, measure_forward_backward, tf32, timed_backends
from latentops import testing
from latentops.reference import graph as reference

GRAPH = dict(relu=False, symmetrize="mean")


def lgg_dense_smoothness(x, y1h, k):
    """The anchor's torch dense path (one graph): cosine, top-k, mean symmetrization, L = D − A,
    tr(Yᵀ L Y)."""
    x = torch.nn.functional.normalize(x.flatten(1), dim=1)
    w = x @ x.t()
    w.fill_diagonal_(0)
    v, i = w.topk(k, dim=1)
    a = torch.zeros_like(w).scatter_(1, i, v)
    a = (a + a.t()) / 2
    lap = torch.diag(a.sum(1)) - a
    return torch.einsum("nc,nm,mc->", y1h, lap, y1h)


def graph_smoothness_case(layers: int, n: int, d: int, k: int, device: str, quick: bool) -> Case:
    case = Case(
        f"graph smoothness {layers} layers n={n} d={d} k={k} fp32, forward and backward apart",
        0.0,  # forward and backward do different work: GFLOP/s would mix them
        ["torch dense fwd", "torch dense bwd"],
        family="graph",
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    xs, labels = testing.graph_sample(n, (d,) * layers, 10, generator=gen, device=device)
    x = torch.stack(xs).requires_grad_(True)
    y = torch.nn.functional.one_hot(labels, 10).float()
    budget = 0.3 if quick else 1.0
    x64 = x.detach().double().requires_grad_(True)
    value = torch.stack([reference.smoothness(x64[b], y.double(), k=k, **GRAPH) for b in range(layers)]).sum()
    value.backward()

    def run(name, forward):
        measure_forward_backward(
            case,
            name,
            forward,
            [x],
            device,
            check_forward=lambda out: check_close("s", out, value.detach(), 1e-4),
            check_grads=lambda grads: check_close("dL/dx", grads[0], x64.grad, 1e-4),
            budget_s=budget,
        )

    for backend in timed_backends(device, case):
        run(f"latentops {backend}", lambda b=backend: latentops.graph_smoothness(x, y, k=k, backend=b, **GRAPH).sum())
    with tf32(False):
        run("torch dense", lambda: sum(lgg_dense_smoothness(x[b], y, k) for b in range(layers)))
    return case
