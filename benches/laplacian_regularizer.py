"""The Laplacian-networks regularizer's cost per training step, forward and backward timed apart:
γ^m·mean_l |s_l − s_{l−1}| over the 17 taps of PreActResNet18 at the authors' batch (100 CIFAR-10
images), m = 2, the full cosine graph, L = D − W. latentops' SmoothnessVariationLoss on each backend
against the authors' dense formulation in torch (per tap: normalize, W = NNᵀ, L = D − W, L^m by
matrix products, tr(YᵀL^mY)), every row checked against that formulation in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Case, check_close, measure_forward_backward, timed_backends
from latentops.models.classifiers import PreActResNet18
from latentops.nn import SmoothnessVariationLoss


def authors_dense(taps: list[torch.Tensor], y1h: torch.Tensor, m: int) -> torch.Tensor:
    """mean_l |s_l − s_{l−1}|, s_l = tr(Yᵀ (D − W)^m Y), W the cosine Gram of tap l (its diagonal
    kept, as theirs: it cancels in D − W)."""
    s = []
    for tap in taps:
        x = F.normalize(tap.flatten(1), dim=1)
        w = x @ x.t()
        lap = torch.diag(w.sum(1)) - w
        power = lap
        for _ in range(1, m):
            power = power @ lap
        s.append(torch.trace(y1h.t() @ power @ y1h))
    s = torch.stack(s)
    return (s[1:] - s[:-1]).abs().mean()


def laplacian_regularizer_case(batch: int, m: int, device: str, quick: bool) -> Case:
    case = Case(
        f"Laplacian-networks regularizer, PreActResNet18's 17 taps of {batch} CIFAR-10 images, m={m}, "
        "full cosine graph, fp32, forward and backward apart",
        0.0,
        ["authors' dense torch fwd", "authors' dense torch bwd"],
        family="graph",
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the taps' shapes and values of an untrained network
        _, taps = PreActResNet18((3, 32, 32), 10).eval()(torch.randn(batch, 3, 32, 32, generator=gen), True)
    taps = [t.to(device).requires_grad_(True) for t in taps]
    labels = torch.randint(0, 10, (batch,), generator=gen).to(device)
    y1h = F.one_hot(labels, 10).float()
    taps64 = [t.detach().double().requires_grad_(True) for t in taps]
    expected = authors_dense(taps64, y1h.double(), m)
    expected.backward()
    budget = 0.3 if quick else 1.0

    def run(name, forward):
        measure_forward_backward(
            case,
            name,
            forward,
            taps,
            device,
            check_forward=lambda out: check_close("loss", out, expected.detach(), 1e-3),
            check_grads=lambda grads: check_close(
                "dL/dtaps", torch.cat([g.flatten() for g in grads]), torch.cat([t.grad.flatten() for t in taps64]), 1e-3
            ),
            budget_s=budget,
        )

    for backend in timed_backends(device, case):
        loss = SmoothnessVariationLoss(power=m, num_classes=10, backend=backend)
        run(f"latentops {backend}", lambda loss=loss: loss(taps, labels))
    run("authors' dense torch", lambda: authors_dense(taps, y1h, m))
    return case
