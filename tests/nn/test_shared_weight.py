"""SharedWeightLinear and SharedWeightConv2d: the forward equals the dense layer, the codebook's gradient
is the grouped sum of the weight gradients (against float64), pruned weights stay exactly zero
through training, and the layers compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentops.codecs.pruning import prune_magnitude
from latentops.codecs.quantizers import quantize
from latentops.codecs.shared_weights import SharedWeights
from latentops.nn.shared_weight import SharedWeightConv2d, SharedWeightLinear

CONV_SETTINGS = [
    {},
    {"stride": 2, "padding": 1},
    {"padding": "same", "dilation": 2},
    {"groups": 2, "padding": (1, 2), "stride": (1, 2)},
    {"padding": 1, "padding_mode": "reflect"},
    {"padding": 1, "padding_mode": "circular", "bias": False},
]


def _linear(gen, in_features=17, out_features=3, bias=True) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
    return layer


def _conv(gen, **settings) -> nn.Conv2d:
    layer = nn.Conv2d(4, 6, (3, 2), **settings)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
    return layer


def _grouped_gradient_check(layer, functional, x: torch.Tensor, gen) -> None:
    """codebook.grad against Σ over each code's kept entries of dL/dW, with dL/dW from the same
    layer in float64."""
    out = layer(x)
    upstream = torch.randn(out.shape, generator=gen)
    (out * upstream).sum().backward()

    weight = layer.weight.detach().double().requires_grad_()
    bias = None if layer.bias is None else layer.bias.detach().double()
    (functional(x.double(), weight, bias) * upstream.double()).sum().backward()
    kept = layer.mask
    codes = layer.codes[kept].long()
    k = layer.codebook.numel()
    expected = torch.bincount(codes, weights=weight.grad[kept], minlength=k)
    magnitude = torch.bincount(codes, weights=weight.grad[kept].abs(), minlength=k)
    # float32 sums of terms of both signs: the error scales with Σ|terms|, not with the sum.
    assert bool(((layer.codebook.grad.double() - expected).abs() <= 1e-5 * magnitude + 1e-7).all())


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (130, 67)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_dense_and_groups_gradients(shape, bias, gen):
    out_features, in_features = shape
    dense = _linear(gen, in_features, out_features, bias)
    layer = SharedWeightLinear.from_module(dense, k=5, sparsity=0.4, iters=20)
    shared = layer.shared_weights()
    assert torch.equal(layer.weight, shared.dense())
    x = torch.randn(7, in_features, generator=gen)
    assert torch.allclose(layer(x), F.linear(x, shared.dense(), layer.bias), rtol=1e-6, atol=1e-6)
    _grouped_gradient_check(layer, F.linear, x, gen)
    if bias:
        assert layer.bias.grad is not None


@pytest.mark.parametrize("settings", CONV_SETTINGS)
def test_conv2d_keeps_settings_and_groups_gradients(settings, gen):
    conv = _conv(gen, **settings)
    layer = SharedWeightConv2d.from_module(conv, k=6, method="uq", sparsity=0.3)
    for name in ("stride", "padding", "dilation", "groups", "padding_mode", "kernel_size"):
        assert getattr(layer, name) == getattr(conv, name)
    x = torch.randn(2, 4, 9, 11, generator=gen)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
    assert torch.allclose(layer(x), conv(x), rtol=1e-5, atol=1e-5)
    assert layer(x).shape == conv(x).shape

    def functional(x, weight, bias):
        tensors = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return torch.func.functional_call(conv.double(), tensors, (x,))

    _grouped_gradient_check(layer, functional, x, gen)


def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay(gen):
    layer = SharedWeightLinear.from_module(_linear(gen, 17, 5), k=4, method="pws", sparsity=0.6)
    mask, codes = layer.mask.clone(), layer.codes.clone()
    codebook = layer.codebook.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        layer(torch.randn(8, 17, generator=gen)).square().mean().backward()
        optimizer.step()
    weight = layer.weight
    assert bool((weight[~mask] == 0).all()) and not bool(weight[~mask].signbit().any())
    assert not torch.equal(layer.codebook.detach(), codebook)  # the codebook did train
    assert torch.equal(layer.codes, codes) and torch.equal(layer.mask, mask)
    assert torch.equal(layer.shared_weights().dense(), weight.detach())


def test_state_is_codebook_and_bias_parameters_and_code_and_mask_buffers(gen):
    layer = SharedWeightLinear.from_module(_linear(gen), k=3, sparsity=0.5)
    assert [name for name, _ in layer.named_parameters()] == ["codebook", "bias"]
    assert list(layer.state_dict()) == ["codebook", "bias", "codes", "mask"]  # not the derived `kept`
    other = SharedWeightLinear.from_module(_linear(gen), k=3, sparsity=0.9)
    other.load_state_dict(layer.state_dict())  # another mask: the kept indices follow it
    assert torch.equal(other.weight, layer.weight) and torch.equal(other.bias, layer.bias)
    assert "k=3" in repr(layer) and "in_features=17" in repr(layer)


def test_from_shared_weights(gen):
    weight = torch.randn(3, 17, generator=gen)
    shared = quantize(weight, 4, method="ecsq", mask=prune_magnitude(weight, 0.5), lam=0.0)
    dense = _linear(gen)
    layer = SharedWeightLinear.from_module(dense, shared)
    assert torch.equal(layer.weight, shared.dense()) and torch.equal(layer.bias, dense.bias)
    assert layer.bias is not dense.bias
    plain = SharedWeightLinear(shared)
    assert plain.bias is None and plain.out_features == 3


def test_compiles_fullgraph(gen):
    layer = SharedWeightLinear.from_module(_linear(gen, 17, 5), k=4, sparsity=0.5)
    x = torch.randn(6, 17, generator=gen)
    # aot_eager traces forward and backward as inductor would (fullgraph: no graph break allowed)
    # without inductor's C++ compile, which takes most of a minute on a loaded 2-core machine.
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    assert torch.allclose(out, layer(x), rtol=1e-6, atol=1e-6)
    out.sum().backward()
    eager_grad = layer.codebook.grad.clone()
    layer.codebook.grad = None
    layer(x).sum().backward()
    assert torch.allclose(eager_grad, layer.codebook.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda g: SharedWeightLinear.from_module(_conv(g), k=2), TypeError, "module must be a torch.nn.Linear"),
        (lambda g: SharedWeightConv2d.from_module(_linear(g), k=2), TypeError, "module must be a torch.nn.Conv2d"),
        (lambda g: SharedWeightLinear.from_module(_linear(g)), TypeError, "needs either shared"),
        (
            lambda g: SharedWeightLinear.from_module(_linear(g), quantize(torch.ones(3, 17), 2), k=2),
            TypeError,
            "either shared or k",
        ),
        (
            lambda g: SharedWeightLinear.from_module(_linear(g), quantize(torch.ones(17, 3), 2)),
            ValueError,
            "shared must have the module's weight shape",
        ),
        (lambda g: SharedWeightLinear.from_module(_linear(g), torch.ones(3, 17)), TypeError, "shared must be"),
        (lambda g: SharedWeightLinear(quantize(torch.ones(17), 2)), ValueError, "shared must be 2-D"),
        (lambda g: SharedWeightConv2d(quantize(torch.ones(3, 17), 2)), ValueError, "shared must be 4-D"),
        (lambda g: SharedWeightLinear(quantize(torch.ones(3, 17), 2), torch.ones(4)), ValueError, "bias must be"),
        (lambda g: SharedWeightLinear.from_module(_linear(g), k=0), ValueError, "k must be"),
        (lambda g: SharedWeightLinear.from_module(_linear(g), k=2, sparsity=2.0), ValueError, "sparsity"),
        (lambda g: SharedWeightConv2d(quantize(torch.ones(4, 2, 3, 3), 2), groups=3), ValueError, "groups"),
    ],
)
def test_bad_arguments(call, error, match, gen):
    with pytest.raises(error, match=match):
        call(gen)


def test_shared_weights_type_is_checked():
    with pytest.raises(TypeError, match="shared must be a latentops\\.codecs SharedWeights"):
        SharedWeightLinear(torch.ones(3, 17))
    assert isinstance(SharedWeightLinear(quantize(torch.ones(3, 17), 2)).shared_weights(), SharedWeights)
