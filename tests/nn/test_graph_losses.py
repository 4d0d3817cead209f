"""latentops.nn graph losses against their definitions written with the float64 reference."""

import pytest
import torch

from latentops.nn import GeometryTargetLoss, GraphDistillationLoss, SmoothnessVariationLoss
from latentops.reference import graph as ref


def _layers(gen, n, widths, dtype=torch.float64):
    return [torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_(True) for d in widths]


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_graph_distillation_loss(backend, gen):
    student = _layers(gen, 14, (6, 9), torch.float32)
    teacher = _layers(gen, 14, (11, 4), torch.float32)
    for kw in [
        dict(k=4),
        dict(k=4, power=2, normalize="sym"),
        dict(k=None, reduction="mean"),
        dict(k=3, teacher_mask=True, normalize="rw"),
    ]:
        loss = GraphDistillationLoss(backend=backend, **kw)(student, teacher)
        expected = 0.0
        for s, t in zip(student, teacher):
            s64, t64 = s.detach().double(), t.detach().double()
            k, normalize = kw.get("k"), kw.get("normalize")
            if kw.get("teacher_mask"):
                w_t = ref.similarity(t64)
                mask = torch.zeros_like(w_t, dtype=torch.bool).scatter(1, w_t.topk(k).indices, True)
                mask = mask | mask.T
                a_t = ref.normalized(w_t * mask, normalize)
                a_s = ref.normalized(ref.similarity(s64) * mask, normalize)
            else:
                a_t = ref.similarity_graph(t64, k=k, normalize=normalize)
                a_s = ref.similarity_graph(s64, k=k, normalize=normalize)
            p = kw.get("power", 1)
            diff = (torch.linalg.matrix_power(a_t, p) - torch.linalg.matrix_power(a_s, p)).square().sum()
            expected = expected + (diff / 14**2 if kw.get("reduction") == "mean" else diff)
        torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-6)
        loss.backward()
    assert all(t.grad is None for t in teacher)  # teacher graphs are detached
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    with pytest.raises(ValueError, match="teacher_mask=True needs k"):
        GraphDistillationLoss(teacher_mask=True)
    with pytest.raises(ValueError, match="as many layers"):
        GraphDistillationLoss()(student, teacher[:1])


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_smoothness_variation_loss(backend, gen):
    layers = _layers(gen, 20, (8, 5, 12), torch.float32)
    labels = torch.randint(0, 3, (20,), generator=gen)
    module = SmoothnessVariationLoss(k=5, normalize="sym", num_classes=3, backend=backend)
    loss = module(layers, labels)
    y = torch.nn.functional.one_hot(labels, 3).double()
    s = torch.stack([ref.smoothness(t.detach().double(), y, k=5, normalize="sym") for t in layers])
    torch.testing.assert_close(loss.double(), (s[1:] - s[:-1]).abs().mean(), rtol=1e-4, atol=1e-6)
    loss.backward()
    assert all(t.grad is not None for t in layers)
    single = module([layers[0]], labels)
    assert single.item() == 0.0


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_geometry_target_loss(backend, gen):
    labels = torch.randint(0, 4, (16,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    module = GeometryTargetLoss(num_classes=4, backend=backend)
    # Outputs that are the labels themselves (up to scale) have exactly the target geometry.
    assert module(onehot * 3.0, labels).item() < 1e-10
    out = torch.randn(16, 2, 3, generator=gen, requires_grad=True)  # (n, ...) feature maps
    loss = module(out, labels)
    target = ref.similarity(onehot.double())
    expected = (ref.similarity(out.detach().flatten(1).double()) - target).square().sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-6)
    loss.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
