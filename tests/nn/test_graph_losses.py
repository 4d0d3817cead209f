"""latentops.nn graph losses against their definitions written with the float64 reference."""

import numpy as np
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


LOSSES = [GraphDistillationLoss, SmoothnessVariationLoss, GeometryTargetLoss]
INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(backend="foo"), ValueError, "backend"),  # issue 10: refused only at forward
        (dict(backend=1), ValueError, "backend"),
        (dict(k=0), ValueError, "k"),
        (dict(k=True), TypeError, "k"),
        (dict(k=2.0), TypeError, "k"),
        (dict(metric="dot"), ValueError, "metric"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(sigma=INF), ValueError, "sigma"),
        (dict(sigma=NAN), ValueError, "sigma"),
        (dict(sigma="1"), TypeError, "sigma"),
        (dict(relu="no"), TypeError, "relu"),
        (dict(relu=None), TypeError, "relu"),
        (dict(symmetrize="max"), ValueError, "symmetrize"),
        (dict(normalize="l2"), ValueError, "normalize"),
    ],
)
def test_bad_graph_options_are_refused_at_construction(loss_class, kwargs, error, name):
    with pytest.raises(error, match=name):
        loss_class(**kwargs)


@pytest.mark.parametrize(
    "loss_class, kwargs, error, name",
    [
        (SmoothnessVariationLoss, dict(power=0), ValueError, "power"),  # issue 10: accepted
        (SmoothnessVariationLoss, dict(power=1.5), TypeError, "power"),
        (SmoothnessVariationLoss, dict(num_classes=-1), ValueError, "num_classes"),
        (SmoothnessVariationLoss, dict(num_classes=True), TypeError, "num_classes"),
        (GeometryTargetLoss, dict(num_classes=0), ValueError, "num_classes"),
        (GeometryTargetLoss, dict(reduction="max"), ValueError, "reduction"),
        (GraphDistillationLoss, dict(power=-2), ValueError, "power"),
        (GraphDistillationLoss, dict(power=False), TypeError, "power"),
        (GraphDistillationLoss, dict(reduction=None), ValueError, "reduction"),
        (GraphDistillationLoss, dict(k=3, teacher_mask="yes"), TypeError, "teacher_mask"),
    ],
)
def test_bad_loss_arguments_name_the_argument(loss_class, kwargs, error, name):
    with pytest.raises(error, match=name):
        loss_class(**kwargs)


def test_numpy_and_torch_integers_are_ints():
    module = SmoothnessVariationLoss(k=np.int64(3), power=torch.tensor(2), num_classes=np.int32(4), sigma=np.float32(2))
    assert (module.k, module.power, module.num_classes) == (3, 2, 4)
    assert all(type(v) is int for v in (module.k, module.power, module.num_classes))
    assert GraphDistillationLoss(k=np.uint8(2), power=np.int16(2), teacher_mask=np.bool_(True)).teacher_mask is True


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the Triton interpreter's NaN arithmetic
@pytest.mark.parametrize("backend", ["cpu", "torch", "triton"])
@pytest.mark.parametrize("where, bad", [("student", NAN), ("student", INF), ("teacher", -INF), ("labels", NAN)])
def test_non_finite_inputs_make_every_loss_nan(backend, bad, where, gen):
    # Without the explicit check the Triton backend read NaN similarities as 0: finite, wrong losses.
    n = 7
    x = torch.randn(n, 5, generator=gen)
    t = torch.randn(n, 2, 3, generator=gen)
    y = torch.softmax(torch.randn(n, 3, generator=gen), 1)
    {"student": x, "teacher": t, "labels": y}[where].view(-1)[4] = bad
    x.requires_grad_(True)
    for kw in [dict(), dict(k=3, normalize="sym", metric="gaussian")]:
        cases = [  # (loss, the inputs it reads)
            (GraphDistillationLoss(backend=backend, **kw)(x, t), ("student", "teacher")),
            (SmoothnessVariationLoss(backend=backend, **kw)([x, t], y), ("student", "teacher", "labels")),
            (SmoothnessVariationLoss(backend=backend, **kw)([x], y), ("student", "labels")),  # 0, or NaN
            (GeometryTargetLoss(backend=backend, **kw)(x, y), ("student", "labels")),
        ]
        for loss, reads in cases:
            assert torch.isnan(loss) if where in reads else torch.isfinite(loss), (kw, reads, loss)
        sum(loss for loss, _ in cases).backward()  # no error; the step's gradients are not to be used
