import itertools

import pytest
import torch
import torch.nn.functional as F

from latentops.models.classifiers import (
    CLASSIFIERS,
    MLP,
    PreActResNet,
    WideResNet,
    build_classifier,
    parseval_step,
)
from latentops.models.classifiers.wrn import wrn_channels

DIGITS, MNIST, CIFAR = (1, 8, 8), (1, 28, 28), (3, 32, 32)

# Small configurations of each architecture (the full-size ones are checked on one shape below).
SMALL = {
    "mlp": {"widths": (16, 8)},
    "preact": {"blocks": (1, 1, 1), "width": 4},
    "preact-small": {},
    "wrn": {"depth": 10, "width": 0.25},
    "vgg": {"convs": (1, 2), "width": 3, "hidden": 8},
}


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("shape", [DIGITS, MNIST, CIFAR])
@pytest.mark.parametrize("batch", [1, 3])
def test_logits_and_taps_shapes(name, shape, batch):
    torch.manual_seed(0)
    model = build_classifier(name, shape, 7, **SMALL[name]).eval()
    x = torch.randn(batch, *shape)
    logits = model(x)
    assert logits.shape == (batch, 7)
    logits2, taps = model.taps(x)
    logits3, taps3 = model(x, return_taps=True)
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(logits, logits3)
    assert len(taps) == len(taps3) > 0
    assert all(t.shape[0] == batch and torch.isfinite(t).all() for t in taps)


def test_mlp_taps_are_hidden_relus():
    model = MLP(DIGITS, 10, widths=(5, 4, 3))
    _, taps = model.taps(torch.randn(2, *DIGITS))
    assert [t.shape for t in taps] == [(2, 5), (2, 4), (2, 3)]
    assert all((t >= 0).all() for t in taps)


@pytest.mark.parametrize("parseval", [False, True])
def test_preact18_has_17_taps_and_its_size(parseval):
    model = build_classifier("preact18", CIFAR, 10, parseval=parseval).eval()
    assert sum(p.numel() for p in model.parameters()) == 11_171_146
    with torch.no_grad():
        logits, taps = model.taps(torch.randn(2, *CIFAR))
    assert logits.shape == (2, 10)
    assert len(taps) == 17
    assert [t.shape[1] for t in taps] == [64] * 4 + [64, 128, 128, 128] + [128, 256, 256, 256] + [256, 512] + [512] * 3
    assert taps[-1].shape == (2, 512, 4, 4)
    assert all((t >= 0).all() for t in taps)


def test_preact_taps_count_and_small_variant():
    model = PreActResNet(MNIST, 10, blocks=(1, 2, 1), width=3)
    _, taps = model.taps(torch.randn(2, *MNIST))
    assert len(taps) == 2 * 4 + 1
    assert taps[-1].shape == (2, 12, 7, 7)
    small = build_classifier("preact-small", DIGITS, 10)
    _, taps = small.taps(torch.randn(2, *DIGITS))
    assert len(taps) == 5
    assert taps[0].shape == (2, 16, 8, 8)  # no initial downsampling
    assert taps[-1].shape == (2, 32, 4, 4)


def test_wrn_taps_and_parameter_counts():
    model = build_classifier("wrn-28-1", CIFAR, 10).eval()
    n = sum(p.numel() for p in model.parameters())
    assert 0.35e6 < n < 0.39e6  # WRN-28-1: ~0.37 M (369,690 here)
    with torch.no_grad():
        logits, taps = model.taps(torch.randn(2, *CIFAR))
    assert logits.shape == (2, 10)
    assert len(taps) == 3
    assert [t.shape for t in taps] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64)]
    student = build_classifier("wrn-28-0.5", CIFAR, 10)
    m = sum(p.numel() for p in student.parameters())
    assert m < n / 3  # channels halve: about a quarter of the parameters
    assert student.taps(torch.randn(2, *CIFAR))[1][2].shape == (2, 32)


def test_widths_scale():
    assert wrn_channels(1.0) == (16, 32, 64)
    assert wrn_channels(0.5) == (8, 16, 32)
    assert wrn_channels(2) == (32, 64, 128)
    assert wrn_channels(0.01) == (1, 1, 1)
    sizes = [sum(p.numel() for p in WideResNet(DIGITS, 10, depth=10, width=w).parameters()) for w in (0.5, 1, 2)]
    assert sizes[0] < sizes[1] < sizes[2]
    sizes = [sum(p.numel() for p in PreActResNet(DIGITS, 10, blocks=(1, 1), width=w).parameters()) for w in (2, 4, 8)]
    assert sizes[0] < sizes[1] < sizes[2]
    _, taps = PreActResNet(DIGITS, 10, blocks=(1, 1), width=6).taps(torch.randn(2, *DIGITS))
    assert taps[0].shape[1] == 6 and taps[-1].shape[1] == 12


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    options = SMALL.get(name, {})
    shape = DIGITS if name in SMALL or name == "preact-small" else CIFAR
    if name in ("preact18", "wrn-28-1", "wrn-28-0.5"):
        shape = (3, 8, 8)
    model = build_classifier(name, shape, 5, **options).train()
    x = torch.randn(3, *shape)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 4]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def parseval_error(w):
    return torch.linalg.matrix_norm(w @ w.t() - torch.eye(w.shape[0]))


def test_parseval_step_drives_rows_orthonormal():
    torch.manual_seed(0)
    lin = torch.nn.Linear(20, 8, bias=True)
    with torch.no_grad():
        lin.weight.mul_(1.4 / torch.linalg.matrix_norm(lin.weight, ord=2))
    bias = lin.bias.clone()
    errors = [parseval_error(lin.weight).item()]
    for _ in range(300):
        parseval_step(lin, beta=0.05)
        errors.append(parseval_error(lin.weight).item())
    assert errors[-1] < 1e-3 < errors[0]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(errors))
    torch.testing.assert_close(lin.bias, bias)  # one-dimensional parameters are left alone
    assert not lin.weight.requires_grad or lin.weight.grad is None


def test_parseval_step_on_conv_weights():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, bias=False)
    w = conv.weight.reshape(6, -1)
    with torch.no_grad():
        conv.weight.mul_(1.2 / torch.linalg.matrix_norm(w, ord=2))
    before = parseval_error(conv.weight.reshape(6, -1)).item()
    for _ in range(50):
        parseval_step(conv)  # default beta 0.01
    assert parseval_error(conv.weight.reshape(6, -1)).item() < before
    assert conv.weight.shape == (6, 4, 3, 3)


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: build_classifier("resnet", CIFAR, 10), "resnet"),
        (lambda: build_classifier("mlp", CIFAR, 10, depth=3), "depth"),
        (lambda: build_classifier("preact18", CIFAR, 10, width=3), "width"),
        (lambda: build_classifier("mlp", (8, 8), 10), "image_shape"),
        (lambda: build_classifier("mlp", CIFAR, 0), "num_classes"),
        (lambda: build_classifier("mlp", CIFAR, 10, widths=(4, 0)), "widths"),
        (lambda: build_classifier("preact", CIFAR, 10, blocks=()), "blocks"),
        (lambda: build_classifier("preact", CIFAR, 10, width=0), "width"),
        (lambda: build_classifier("wrn", CIFAR, 10, depth=27), "depth"),
        (lambda: build_classifier("wrn", CIFAR, 10, width=-1.0), "width"),
        (lambda: parseval_step(torch.nn.Linear(2, 2), beta=0), "beta"),
    ],
)
def test_bad_arguments_are_named(call, word):
    with pytest.raises((ValueError, TypeError), match=word):
        call()


def test_vgg19_has_the_fully_connected_layers_of_shams_experiments():
    model = build_classifier("vgg19", CIFAR, 10)
    shapes = [tuple(layer.weight.shape) for layer in (*model.hidden, model.head)]
    assert shapes == [(4096, 512), (4096, 4096), (10, 4096)]  # the three layers sHAM compresses
    assert [t.shape[1] for t in model.taps(torch.randn(1, *CIFAR))[1]] == [64, 128, 256, 512, 512, 4096, 4096]
