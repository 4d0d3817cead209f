"""CompressedLinear and CompressedConv2d against the dense nn.Linear / nn.Conv2d holding the decoded
weight: outputs, state_dict round trips, torch.compile, device moves and argument errors."""

import io
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import CUDA, backend_params
from latentops import testing
from latentops.codecs import CorruptedFileError, encode_hcsr
from latentops.nn.compressed import CompressedConv2d, CompressedLinear

BACKENDS = [*backend_params("cpu"), *backend_params("cuda")]


def _device(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and CUDA) else "cpu"


def _shared(shape, k, sparsity, gen):
    """A SharedWeights-like object (codes, codebook, mask) of a 2-D or 4-D weight shape."""
    rows = shape[0]
    cols = int(torch.Size(shape[1:]).numel())
    codes, mask, codebook = testing.compressed_weight_sample(rows, cols, k, sparsity, generator=gen)
    return types.SimpleNamespace(codes=codes.reshape(shape), mask=mask.reshape(shape), codebook=codebook)


def _dense(shared):
    return torch.where(shared.mask, shared.codebook[shared.codes], 0.0)


def _close(a, b, scale):
    """fp32 against float64, relative to the size of the terms summed."""
    assert a.shape == b.shape
    err = (a.double().cpu() - b.double().cpu()).abs().max().item()
    assert err <= 1e-5 * max(1.0, scale), (err, scale)


# Small under the Triton interpreter, which pays per decode step.
def _linear_shapes(backend):
    if backend == "triton" and not CUDA:
        return [(1, 1, 1), (3, 17, 5), (13, 67, 4)]
    return [(1, 1, 1), (3, 17, 5), (130, 67, 17), (67, 300, 3)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_matches_dense(backend, gen):
    device = _device(backend)
    for out_f, in_f, batch in _linear_shapes(backend):
        shared = _shared((out_f, in_f), 16, 0.8, gen)
        dense = nn.Linear(in_f, out_f).double()
        with torch.no_grad():
            dense.weight.copy_(_dense(shared))
        layer = CompressedLinear.from_module(dense.float(), shared, backend=backend).to(device)
        dense.double()
        x = torch.randn(2, batch, in_f, generator=gen, dtype=torch.float64)
        y = layer(x.float().to(device))
        assert y.shape == (2, batch, out_f) and y.dtype == torch.float32 and y.device.type == device
        _close(y, dense(x), (x.abs() @ dense.weight.abs().T).max().item())


@pytest.mark.parametrize("method", ["decode", "unfold"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_matches_dense(backend, method, gen):
    device = _device(backend)
    interpreted = backend == "triton" and not CUDA
    cases = [  # (in, out, kernel, stride, padding, dilation, batch, H, W)
        (3, 5, 3, 1, 1, 1, 2, 4, 3),
        (1, 1, 1, 1, 0, 1, 1, 1, 1),
        (4, 3, (3, 2), (2, 1), "valid", (1, 2), 1, 6, 5),
        (2, 7, 3, 1, "same", 2, 1, 3, 4),
    ]
    if not interpreted:  # the interpreter pays per program: a few output positions only
        cases += [(3, 5, 3, 1, 1, 1, 2, 7, 9), (17, 33, 5, 2, 2, 1, 3, 19, 13), (2, 7, 3, 1, "same", 2, 2, 6, 5)]
    for c_in, c_out, kernel, stride, padding, dilation, batch, h, w in cases:
        conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation)
        shared = _shared(tuple(conv.weight.shape), 8, 0.7, gen)
        with torch.no_grad():
            conv.weight.copy_(_dense(shared))
        layer = CompressedConv2d.from_module(conv, shared, backend=backend, method=method).to(device)
        x = torch.randn(batch, c_in, h, w, generator=gen, dtype=torch.float64)
        conv.double()
        expected = conv(x)
        # method="decode" runs F.conv2d, which on a GPU follows torch's TF32 switch (on for cuDNN by
        # default, as for nn.Conv2d): off here, to check the decoded weight to fp32 rounding.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            y = layer(x.float().to(device))
            unbatched = layer(x[0].float().to(device))
        assert y.dtype == torch.float32 and y.device.type == device
        scale = F.conv2d(x.abs(), conv.weight.abs(), None, stride, padding, dilation).max().item()
        _close(y, expected, scale)
        _close(unbatched, expected[0], scale)


def test_modules_hold_the_compressed_weight_not_a_dense_copy(gen):
    shared = _shared((64, 300), 16, 0.95, gen)
    layer = CompressedLinear.from_module(nn.Linear(300, 64), shared, backend="torch")
    assert layer.weight_nbytes == layer.weight.nbytes < 0.25 * 64 * 300 * 4
    assert torch.equal(layer.weight.decode(), _dense(shared))
    for t in layer.state_dict().values():
        assert t.numel() < 64 * 300 * 0.2  # nothing of the dense size is stored
    assert "psi=" in repr(layer) and "in_features=300" in repr(layer)
    conv = CompressedConv2d.from_module(nn.Conv2d(3, 8, 3, bias=False), _shared((8, 3, 3, 3), 4, 0.5, gen))
    assert "psi=" in repr(conv) and "kernel_size=(3, 3)" in repr(conv) and "method='decode'" in repr(conv)
    assert conv.bias is None
    # from an HcsrMatrix of the flattened weight, too
    matrix = encode_hcsr(shared.codes, shared.mask, shared.codebook)
    again = CompressedLinear.from_module(nn.Linear(300, 64, bias=False), matrix, backend="torch")
    assert again.weight is matrix and again.bias is None


def test_state_dict_round_trip_including_another_matrix(gen):
    a = CompressedLinear.from_module(nn.Linear(67, 17), _shared((17, 67), 16, 0.9, gen), backend="torch")
    b = CompressedLinear.from_module(nn.Linear(67, 17), _shared((17, 67), 3, 0.3, gen), backend="torch")
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer))
    x = torch.randn(5, 67, generator=gen)
    assert torch.equal(b(x), a(x))
    assert b.weight_nbytes == a.weight_nbytes and torch.equal(b.weight.decode(), a.weight.decode())

    conv_a = CompressedConv2d.from_module(nn.Conv2d(3, 4, 3), _shared((4, 3, 3, 3), 8, 0.5, gen), backend="torch")
    conv_b = CompressedConv2d.from_module(nn.Conv2d(3, 4, 3), _shared((4, 3, 3, 3), 2, 0.9, gen), backend="torch")
    conv_b.load_state_dict(conv_a.state_dict())
    x = torch.randn(2, 3, 6, 6, generator=gen)
    assert torch.equal(conv_b(x), conv_a(x))
    conv_a.method = conv_b.method = "unfold"
    assert torch.equal(conv_b(x), conv_a(x))

    wrong_shape = CompressedLinear.from_module(nn.Linear(66, 17), _shared((17, 66), 4, 0.5, gen))
    with pytest.raises(ValueError, match="weight"):
        wrong_shape.load_state_dict(a.state_dict())
    corrupted = a.state_dict()
    corrupted["weight_words"] = corrupted["weight_words"][:-1].clone()  # padding gone
    with pytest.raises(CorruptedFileError):
        b.load_state_dict(corrupted)


def test_to_moves_bias_and_kernel_arguments_not_the_parts(gen):
    layer = CompressedLinear.from_module(nn.Linear(9, 5), _shared((5, 9), 4, 0.5, gen), backend="torch")
    layer.double()
    assert layer.bias.dtype == torch.float64 and layer.weight_codebook.dtype == torch.float32
    x = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    assert layer(x).dtype == torch.float64
    if CUDA:
        layer.cuda()
        assert layer.bias.is_cuda and not layer.weight_words.is_cuda
        assert layer(x.cuda()).is_cuda


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend, gen):
    if backend == "triton" and not CUDA:
        pytest.skip("slow under the Triton interpreter; tests/ops/test_compressed_linear.py compiles the op there")
    device = _device(backend)
    linear = CompressedLinear.from_module(nn.Linear(17, 6), _shared((6, 17), 4, 0.6, gen), backend=backend)
    conv_shared = _shared((3, 2, 3, 3), 4, 0.5, gen)
    layers = [(linear, torch.randn(4, 17, generator=gen))]
    for method in ("decode", "unfold"):
        conv = CompressedConv2d.from_module(nn.Conv2d(2, 3, 3, padding=1), conv_shared, backend=backend, method=method)
        layers.append((conv, torch.randn(2, 2, 5, 4, generator=gen)))
    for layer, x in layers:
        layer.to(device)
        x = x.to(device)
        compiled = torch.compile(layer, fullgraph=True)
        torch.testing.assert_close(compiled(x), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["decode", "unfold"])
def test_gradients_reach_the_input(method, gen):
    shared = _shared((3, 2, 3, 3), 4, 0.5, gen)
    layer = CompressedConv2d.from_module(nn.Conv2d(2, 3, 3), shared, backend="torch", method=method)
    dense = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        dense.weight.copy_(layer.weight.decode().reshape(3, 2, 3, 3))
        dense.bias.copy_(layer.bias)
    x = torch.randn(2, 2, 5, 5, generator=gen, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x)
    (expected,) = torch.autograd.grad(dense(x).square().sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


def test_bad_arguments_name_themselves(gen):
    shared = _shared((5, 9), 4, 0.5, gen)
    matrix = encode_hcsr(shared.codes, shared.mask, shared.codebook)
    with pytest.raises(TypeError, match="module"):
        CompressedLinear.from_module(nn.Conv2d(1, 1, 1), shared)
    with pytest.raises(TypeError, match="module"):
        CompressedConv2d.from_module(nn.Linear(9, 5), shared)
    with pytest.raises(ValueError, match="weight"):
        CompressedLinear.from_module(nn.Linear(8, 5), shared)
    with pytest.raises(ValueError, match="weight"):
        CompressedLinear.from_module(nn.Linear(8, 5), matrix)
    with pytest.raises(TypeError, match="weight"):
        CompressedLinear.from_module(nn.Linear(9, 5), torch.zeros(5, 9))
    with pytest.raises(TypeError, match="weight"):
        CompressedLinear(torch.zeros(5, 9))
    with pytest.raises(ValueError, match="bias"):
        CompressedLinear(matrix, torch.zeros(4))
    with pytest.raises(TypeError, match="bias"):
        CompressedLinear(matrix, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="backend"):
        CompressedLinear(matrix, backend="gpu")
    with pytest.raises(TypeError, match="needs either weight"):
        CompressedLinear.from_module(nn.Linear(9, 5), sparsity=0.9)
    with pytest.raises(TypeError, match="quantize options"):
        CompressedLinear.from_module(nn.Linear(9, 5), shared, k=16)
    with pytest.raises(ValueError, match="x's last dimension"):
        CompressedLinear(matrix, backend="torch")(torch.zeros(2, 8))

    conv_shared = _shared((4, 2, 3, 3), 4, 0.5, gen)
    with pytest.raises(ValueError, match="groups"):
        CompressedConv2d.from_module(nn.Conv2d(2, 4, 3, groups=2), _shared((4, 1, 3, 3), 4, 0.5, gen))
    with pytest.raises(ValueError, match="padding_mode"):
        CompressedConv2d.from_module(nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), conv_shared)
    conv_matrix = encode_hcsr(conv_shared.codes.reshape(4, 18), conv_shared.mask.reshape(4, 18), conv_shared.codebook)
    with pytest.raises(ValueError, match="weight"):
        CompressedConv2d(conv_matrix, in_channels=3, kernel_size=3)
    with pytest.raises(ValueError, match="stride"):
        CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3, stride=0)
    with pytest.raises(TypeError, match="kernel_size"):
        CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3.0)
    with pytest.raises(ValueError, match="padding"):
        CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3, padding="full")
    with pytest.raises(ValueError, match="method"):
        CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3, method="im2col")
    with pytest.raises(ValueError, match="padding='same'"):
        CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3, padding="same", stride=2)
    conv = CompressedConv2d(conv_matrix, in_channels=2, kernel_size=3, backend="torch")
    with pytest.raises(ValueError, match="x must be"):
        conv(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="x's spatial size"):
        conv(torch.zeros(1, 2, 2, 5))
    with pytest.raises(TypeError, match="x"):
        conv(torch.zeros(1, 2, 5, 5, dtype=torch.int64))


def test_from_module_prunes_and_quantizes():
    dense = nn.Linear(40, 12)
    layer = CompressedLinear.from_module(dense, k=8, sparsity=0.75, method="uq", backend="torch")
    weight = layer.weight.decode()
    assert int((weight != 0).sum()) == 120 and weight.unique().numel() <= 9
    x = torch.randn(3, 40)
    torch.testing.assert_close(layer(x), F.linear(x, weight, dense.bias.detach()))
