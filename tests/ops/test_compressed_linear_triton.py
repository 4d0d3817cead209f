"""The Triton launchers of compressed_linear (kernels/compressed_linear.py) against the torch spec:
decode bit-identical to the reference decode, forward within fp32 tolerance of float64. Without a
GPU they run under the Triton interpreter, which pays per op and per decode step (a row's kept
entries), so the interpreter cases keep rows short; the cuda-marked tests run bigger ones."""

import pytest
import torch

from conftest import requires_cuda
from latentops.codecs import encode_hcsr
from latentops.reference import compressed_linear as reference

kernels = pytest.importorskip("latentops.kernels.compressed_linear")


def _matrix(rows, cols, k, density, gen, *, empty_rows=()):
    """An hcsr matrix with codes uniform in [0, k), entries kept with probability `density`."""
    codes = torch.randint(0, k, (rows, cols), generator=gen)
    mask = torch.rand(rows, cols, generator=gen) < density
    mask[list(empty_rows)] = False
    codebook = torch.randn(k, generator=gen)
    return encode_hcsr(codes, mask, codebook)


def _long_gaps(rows, cols, gen):
    """Rows of a few short runs far apart: gaps above the escape threshold, coded with raw bits."""
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        starts = torch.randint(0, cols - 8, (3,), generator=gen)
        for s in starts.tolist():
            mask[r, s : s + int(torch.randint(1, 8, (1,), generator=gen))] = True
    codes = torch.randint(0, 5, (rows, cols), generator=gen)
    return encode_hcsr(codes, mask, torch.randn(5, generator=gen))


def _check(matrix, batch, device, gen):
    args = matrix.kernel_args(device)
    rows, cols = matrix.shape
    dense = kernels.compressed_linear_decode(**args)
    expected = reference.compressed_linear_decode(**args)
    assert dense.shape == (rows, cols) and dense.dtype == torch.float32 and dense.device == args["words"].device
    assert torch.equal(dense, expected)
    assert torch.equal(dense.cpu(), matrix.decode())

    x64 = torch.randn(batch, cols, generator=gen, dtype=torch.float64)
    y = kernels.compressed_linear_forward(x64.float().to(device), **args)
    assert y.shape == (batch, rows) and y.dtype == torch.float32 and y.device == args["words"].device
    y64 = reference.compressed_linear_forward(x64.to(device), **args).cpu()
    # fp32 accumulation over the kept entries of a row: error ≤ ~nnz·u·Σ|x·w|
    bound = 1e-6 * (x64.abs() @ expected.double().abs().cpu().T) * max(1, cols) ** 0.5 + 1e-30
    assert ((y.double().cpu() - y64).abs() <= bound).all(), (y.cpu(), y64)


# (rows, cols, batch, k, density): every odd size of the issue, k = 1 (0-bit value codes) and k =
# 1024, a dense matrix, an all-zero one; decode steps (the longest row) kept short.
CASES = [
    (1, 1, 1, 1, 1.0),
    (1, 67, 3, 16, 0.2),
    (3, 1, 17, 4, 0.7),
    (3, 5, 3, 4, 1.0),  # fully dense
    (17, 5, 17, 1, 0.6),  # k = 1: values coded in 0 bits
    (17, 67, 1, 1024, 0.15),
    (130, 5, 3, 3, 0.5),
    (130, 67, 1, 1024, 0.08),
    (130, 67, 17, 7, 0.0),  # all zero
    (17, 20, 3, 2, 1.0),  # fully dense, one gap symbol
]


def _cases():
    return [pytest.param(*case, id="x".join(map(str, case))) for case in CASES]


@pytest.mark.parametrize("rows,cols,batch,k,density", _cases())
def test_matches_reference(rows, cols, batch, k, density, gen):
    _check(_matrix(rows, cols, k, density, gen), batch, "cpu", gen)


def test_empty_rows(gen):
    _check(_matrix(17, 67, 8, 0.2, gen, empty_rows=(0, 3, 4, 16)), 3, "cpu", gen)


def test_escaped_gaps(gen):
    matrix = _long_gaps(3, 4000, gen)
    assert matrix.meta["escape_bits"] > 0
    _check(matrix, 3, "cpu", gen)


def test_many_programs(gen, monkeypatch):
    """Small blocks: several row programs (rows not a multiple of the block) and batch programs."""
    monkeypatch.setattr(kernels, "_BLOCK_R", 16)
    monkeypatch.setattr(kernels, "_MAX_BLOCK_B", 2)
    _check(_matrix(37, 9, 5, 0.3, gen, empty_rows=(36,)), 5, "cpu", gen)


def test_no_rows_or_columns(gen):
    for rows, cols in [(0, 5), (4, 0), (0, 0)]:
        matrix = _matrix(rows, cols, 2, 0.5, gen)
        args = matrix.kernel_args()
        assert torch.equal(kernels.compressed_linear_decode(**args), torch.zeros(rows, cols))
        y = kernels.compressed_linear_forward(torch.randn(3, cols, generator=gen), **args)
        assert torch.equal(y, torch.zeros(3, rows))


def test_malformed_stream_stays_in_bounds(gen):
    """Row offsets past the stream or negative and a row_nnz above cols: rows end early (as the
    reference's strict=False does; it wraps a negative word index around, the kernels end the
    row), nothing is read or written out of bounds."""
    matrix = _matrix(17, 11, 4, 0.5, gen)
    args = dict(matrix.kernel_args())
    args["row_nnz"] = torch.full_like(args["row_nnz"], 11)
    args["row_bits"] = args["row_bits"].clone()
    args["row_bits"][5] = 32 * args["words"].numel() + 7
    args["row_bits"][6] = -64
    dense = kernels.compressed_linear_decode(**args)
    expected = reference.compressed_linear_decode(**args)
    expected[6] = 0
    assert torch.equal(dense, expected)
    x = torch.randn(2, 11, generator=gen)
    y = kernels.compressed_linear_forward(x, **args)
    assert torch.allclose(y, x @ dense.T, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("rows,cols,batch,k,density", _cases())
def test_matches_reference_cuda(rows, cols, batch, k, density, gen):
    _check(_matrix(rows, cols, k, density, gen), batch, "cuda", gen)


@pytest.mark.cuda
@requires_cuda
def test_edge_cases_cuda(gen):
    _check(_matrix(17, 67, 8, 0.2, gen, empty_rows=(0, 3, 4, 16)), 3, "cuda", gen)
    _check(_long_gaps(3, 4000, gen), 3, "cuda", gen)
    _check(_matrix(1000, 777, 256, 0.05, gen), 37, "cuda", gen)
    _check(_matrix(513, 300, 1, 1.0, gen), 100, "cuda", gen)
