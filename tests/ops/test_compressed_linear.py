"""latentops.compressed_linear and latentops.decompress on every backend against the float64 spec."""

import pytest
import torch
import torch.nn.functional as F

import latentops
from conftest import CUDA, backend_params
from latentops import testing
from latentops.codecs import encode_hcsr
from latentops.ops.compressed_linear import _TENSORS, _decode, _forward

BACKENDS = [*backend_params("cpu"), *backend_params("cuda")]


def _device(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and CUDA) else "cpu"


def _shapes(backend):
    interpreted = backend == "triton" and not CUDA
    return testing.COMPRESSED_LINEAR_INTERPRETER_SHAPES if interpreted else testing.COMPRESSED_LINEAR_SHAPES


def _sample(rows, cols, k, sparsity, gen):
    codes, mask, codebook = testing.compressed_weight_sample(rows, cols, k, sparsity, generator=gen)
    return encode_hcsr(codes, mask, codebook), (codebook[codes] * mask)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_is_bit_exact_on_every_backend(backend, gen):
    for shape in _shapes(backend):
        weight, dense = _sample(*shape, gen)
        assert torch.equal(weight.decode(), dense)
        decoded = latentops.decompress(weight, device=_device(backend), backend=backend)
        assert decoded.dtype == torch.float32 and torch.equal(decoded.cpu(), dense), shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 3, 8, 65])
def test_forward_and_gradients_match_float64(backend, batch, gen):
    device = _device(backend)
    for rows, cols, k, sparsity in _shapes(backend):
        if rows * batch > 1 << 20 and backend != "cpu":
            continue
        weight, dense = _sample(rows, cols, k, sparsity, gen)
        x64 = torch.randn(batch, cols, generator=gen, dtype=torch.float64)
        b64 = torch.randn(rows, generator=gen, dtype=torch.float64)
        g64 = torch.randn(batch, rows, generator=gen, dtype=torch.float64)
        x, b = (t.float().to(device).requires_grad_(True) for t in (x64, b64))
        y = latentops.compressed_linear(x, weight, b, backend=backend)
        assert y.shape == (batch, rows) and y.dtype == torch.float32 and y.device == x.device
        y.backward(g64.float().to(device))
        leaves64 = [t.requires_grad_(True) for t in (x64, b64)]
        F.linear(x64, dense.double(), b64).backward(g64)
        expected = F.linear(x64, dense.double(), b64)
        # fp32 sums of `cols` products: error ~ eps·Σ|x·w|
        scale = (x64.abs() @ dense.double().abs().T).max().item() + 1
        assert (y.detach().cpu().double() - expected).abs().max().item() <= 1e-5 * scale, (rows, cols, k)
        grad_scale = (g64.abs() @ dense.double().abs()).max().item() + 1
        assert (x.grad.cpu().double() - leaves64[0].grad).abs().max().item() <= 1e-5 * grad_scale
        assert torch.allclose(b.grad.cpu().double(), leaves64[1].grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_return_their_dtype(backend, dtype, gen):
    device = _device(backend)
    weight, dense = _sample(33, 67, 32, 0.9, gen)
    x = torch.randn(2, 5, 67, generator=gen).to(dtype)
    y = latentops.compressed_linear(x.to(device), weight, backend=backend)
    assert y.dtype == dtype and y.shape == (2, 5, 33)
    plain = F.linear(x.float(), dense).to(dtype)  # how far a plain half-precision result lands
    assert (y.cpu().float() - F.linear(x.double(), dense.double()).float()).abs().max() <= 2 * (
        (plain.float() - F.linear(x.double(), dense.double()).float()).abs().max() + 1e-3
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_dims_non_contiguous_and_empty_inputs(backend, gen):
    device = _device(backend)
    weight, dense = _sample(17, 40, 8, 0.8, gen)
    x = torch.randn(40, 3, 4, generator=gen).to(device).permute(1, 2, 0)  # (3, 4, 40), not contiguous
    y = latentops.compressed_linear(x, weight, backend=backend)
    torch.testing.assert_close(y.cpu(), F.linear(x.cpu(), dense), rtol=1e-5, atol=1e-5)
    empty = latentops.compressed_linear(torch.zeros(0, 40, device=device), weight, backend=backend)
    assert empty.shape == (0, 17)
    no_rows = encode_hcsr(*_empty(0, 5))
    assert latentops.compressed_linear(torch.ones(2, 5, device=device), no_rows, backend=backend).shape == (2, 0)


def _empty(rows, cols):
    return torch.zeros(rows, cols, dtype=torch.int64), torch.zeros(rows, cols, dtype=torch.bool), torch.ones(1)


def test_gradcheck_float64_on_the_reference(gen):
    weight, _ = _sample(7, 11, 4, 0.5, gen)
    x = torch.randn(3, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: latentops.compressed_linear(x, weight, b, backend="torch"), (x, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_every_stage(backend, gen):
    device = _device(backend)
    weight, _ = _sample(13, 21, 6, 0.7, gen)
    args = weight.kernel_args(device)
    matrix = (
        *(args[n] for n in _TENSORS),
        *(args[n] for n in ("cols", "gap_bits", "value_bits", "escape", "escape_bits")),
    )
    x = torch.randn(4, 21, generator=gen).to(device).requires_grad_(True)
    torch.library.opcheck(_forward.custom_op, (x, *matrix, backend))
    torch.library.opcheck(_decode.custom_op, (*matrix, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph_forward_and_backward(backend, gen):
    device = _device(backend)
    weight, dense = _sample(19, 23, 8, 0.6, gen)
    bias = torch.randn(19, generator=gen).to(device)
    layer = torch.compile(lambda x: latentops.compressed_linear(x, weight, bias, backend=backend), fullgraph=True)
    x = torch.randn(5, 23, generator=gen).to(device).requires_grad_(True)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach().cpu(), F.linear(x.detach().cpu(), dense, bias.cpu()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.cpu(), dense.sum(0).expand(5, -1), rtol=1e-5, atol=1e-5)


def test_bad_arguments_name_themselves(gen):
    weight, dense = _sample(4, 6, 3, 0.5, gen)
    x = torch.randn(2, 6)
    with pytest.raises(TypeError, match="weight must be an HcsrMatrix"):
        latentops.compressed_linear(x, dense)
    with pytest.raises(TypeError, match="x must be"):
        latentops.compressed_linear(x.long(), weight)
    with pytest.raises(ValueError, match="x's last dimension must be weight's in_features = 6"):
        latentops.compressed_linear(torch.randn(2, 5), weight)
    with pytest.raises(ValueError, match=r"bias must have shape \(out_features,\) = \(4,\)"):
        latentops.compressed_linear(x, weight, torch.zeros(3))
    with pytest.raises(ValueError, match="backend"):
        latentops.compressed_linear(x, weight, backend="nope")
    with pytest.raises(ValueError, match="float64"):
        latentops.compressed_linear(x.double(), weight, backend="cpu")
    with pytest.raises(TypeError, match="weight must be an HcsrMatrix"):
        latentops.decompress(dense)


def test_half_input_with_float32_bias_returns_the_input_dtype(gen):
    weight, dense = _sample(9, 13, 4, 0.5, gen)
    x, bias = torch.randn(3, 13, generator=gen).bfloat16(), torch.randn(9, generator=gen)
    y = latentops.compressed_linear(x, weight, bias, backend="torch")
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, (x.float() @ dense.T + bias).bfloat16())
