"""Property-based tests (hypothesis) of the hcsr encoder and latentops.compressed_linear on every CPU
backend: shapes with 0, 1 and odd sizes, k from 1 to 4096, any sparsity and mask pattern (rows of
one long gap, runs, single columns), codebooks with zeros, negative zeros, tiny and huge values.
The decode must give W = codebook[codes]·mask bit for bit and the product must match F.linear in
float64."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import latentops
from conftest import fuzz_examples
from latentops.codecs import encode_hcsr

CPU_BACKENDS = [
    name for name in ("cpu", "triton", "torch") if name in latentops._backend.available_on(torch.device("cpu"))
]


@st.composite
def weights(draw):
    rows = draw(st.integers(0, 40))
    cols = draw(st.integers(0, 300))
    k = draw(st.sampled_from([1, 2, 3, 17, 256, 1024, 4096]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    pattern = draw(st.sampled_from(["random", "dense", "empty", "one-per-row", "last-column", "runs"]))
    keep = draw(st.floats(0.0, 1.0))
    if pattern == "random":
        mask = torch.rand(rows, cols, generator=gen) < keep
    elif pattern == "dense":
        mask = torch.ones(rows, cols, dtype=torch.bool)
    elif pattern == "empty":
        mask = torch.zeros(rows, cols, dtype=torch.bool)
    elif pattern == "one-per-row":
        mask = torch.zeros(rows, cols, dtype=torch.bool)
        if cols:
            mask[torch.arange(rows), torch.randint(0, cols, (rows,), generator=gen)] = True
    elif pattern == "last-column":
        mask = torch.zeros(rows, cols, dtype=torch.bool)
        if cols:
            mask[:, -1] = True
    else:
        mask = (torch.arange(cols) // max(1, int(keep * 10) + 1) % 2 == 0).expand(rows, cols).clone()
    codes = torch.randint(0, k, (rows, cols), generator=gen)
    scale = draw(st.sampled_from([1.0, 1e-30, 1e30]))
    codebook = torch.randn(k, generator=gen) * scale
    if draw(st.booleans()):
        codebook[: max(1, k // 4)] = draw(st.sampled_from([0.0, -0.0]))
    return codes, mask, codebook


@settings(max_examples=fuzz_examples(60), deadline=None)
@given(weights(), st.integers(1, 9))
def test_decode_is_exact_and_forward_matches_float64(sample, batch):
    codes, mask, codebook = sample
    weight = encode_hcsr(codes, mask, codebook)
    dense = torch.where(mask, codebook[codes], 0.0)  # pruned entries +0.0
    rows, cols = mask.shape
    x = torch.randn(batch, cols)
    expected = F.linear(x.double(), dense.double())
    tolerance = 1e-5 * ((x.double().abs() @ dense.double().abs().T).max().item() if rows and cols else 0) + 1e-30
    for backend in CPU_BACKENDS:
        decoded = latentops.decompress(weight, backend=backend)
        # bit for bit (−0.0 too, where the codebook holds it and the entry is kept)
        assert torch.equal(decoded.view(torch.int32), dense.view(torch.int32)), backend
        y = latentops.compressed_linear(x, weight, backend=backend)
        assert y.shape == (batch, rows)
        assert (y.double() - expected).abs().max().item() <= tolerance if y.numel() else True, backend


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gaps_longer_than_any_escape(backend):
    # one kept entry per row, at columns far apart: every gap is escaped with wide raw bits
    cols = 200_003
    mask = torch.zeros(3, cols, dtype=torch.bool)
    mask[0, cols - 1] = mask[1, 0] = mask[2, 4096] = mask[2, cols - 2] = True
    codes = torch.zeros(3, cols, dtype=torch.int64)
    weight = encode_hcsr(codes, mask, torch.tensor([1.5]))
    assert weight.meta["escape_bits"] >= 17
    assert torch.equal(latentops.decompress(weight, backend=backend), 1.5 * mask.float())
