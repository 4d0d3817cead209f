"""The compressed_linear launchers of latentops.native (the C++ and CUDA kernels, called directly)
against the torch reference: bit-exact decode, the fused product over every batch-block shape,
the format's corners (escapes, long gaps, 0-bit codes), and streams that break the format, which
must neither crash nor hang (those run in a subprocess, so that a crash fails one test)."""

import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import CUDA
from latentops import testing
from latentops.codecs import encode_hcsr
from latentops.native import library
from latentops.reference import compressed_linear as reference

pytestmark = pytest.mark.skipif(
    library is None or not library.cpu_supported, reason="needs the compiled extension's CPU kernels"
)

# (rows, cols, k, sparsity): the sample shapes plus 0-bit value codes on a sparse row set, a large
# codebook on a dense block, and rows long enough for gaps past the fast gap table.
SHAPES = [
    *testing.COMPRESSED_LINEAR_SHAPES,
    (64, 3000, 1, 0.98),
    (300, 200, 1024, 0.3),
    (8, 40_000, 16, 0.999),
]
BATCHES = [1, 2, 7, 8, 9, 16, 17, 64, 65]


def _native(device):
    from latentops.native import compressed_linear as native

    suffix = "cpu" if device == "cpu" else "cuda"
    return getattr(native, f"compressed_linear_decode_{suffix}"), getattr(native, f"compressed_linear_forward_{suffix}")


def _args(codes, mask, codebook, device="cpu"):
    return encode_hcsr(codes, mask, codebook).kernel_args(device)


def _sample(rows, cols, k, sparsity, gen, device="cpu"):
    codes, mask, codebook = testing.compressed_weight_sample(rows, cols, k, sparsity, generator=gen)
    return _args(codes, mask, codebook, device), codebook[codes] * mask


def _gapped(gen, device="cpu"):
    """Rows whose gaps are all 700..703: symbols past the CPU kernel's fast gap table (510), which
    the encoder codes without an escape (4 symbols cost ~2 bits, escaping them 8)."""
    rows, cols = 40, 30_000
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(1, rows):  # row 0 stays empty
        col = int(torch.randint(0, 700, (1,), generator=gen))
        while col < cols:
            mask[r, col] = True
            col += 701 + int(torch.randint(0, 4, (1,), generator=gen))
    codes = torch.randint(0, 5, (rows, cols), generator=gen)
    codebook = torch.randn(5, generator=gen)
    args = _args(codes, mask, codebook, device)
    assert args["escape"] > 703, "the encoder escaped the long gaps: this case no longer covers its path"
    return args, codebook[codes] * mask


def _check_forward(forward, args, dense, batch, gen, device):
    x64 = torch.randn(batch, dense.shape[1], generator=gen, dtype=torch.float64)
    y = forward(x64.float().to(device), **args)
    assert y.shape == (batch, dense.shape[0]) and y.dtype == torch.float32
    expected = x64 @ dense.double().T
    scale = (x64.abs() @ dense.double().abs().T).max().item() + 1
    assert (y.cpu().double() - expected).abs().max().item() <= 1e-5 * scale, (tuple(dense.shape), batch)


def _devices():
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="needs a GPU")])]


@pytest.mark.parametrize("device", _devices())
def test_decode_is_bit_exact(device, gen):
    decode, _ = _native(device)
    for shape in SHAPES:
        args, dense = _sample(*shape, gen, device)
        assert torch.equal(decode(**args).cpu(), dense), shape
    args, dense = _gapped(gen, device)
    assert torch.equal(decode(**args).cpu(), dense)


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("batch", BATCHES)
def test_forward_matches_float64(device, batch, gen):
    _, forward = _native(device)
    for rows, cols, k, sparsity in SHAPES:
        if rows * batch > 1 << 21 or cols * batch > 1 << 21:
            continue
        args, dense = _sample(rows, cols, k, sparsity, gen, device)
        _check_forward(forward, args, dense, batch, gen, device)
    args, dense = _gapped(gen, device)
    _check_forward(forward, args, dense, batch, gen, device)


@pytest.mark.parametrize("device", _devices())
def test_every_escape_width(device, gen):
    """Escaped gaps of 1..31 raw bits: a row of two entries, the second `gap` columns on."""
    decode, forward = _native(device)
    for bits in (1, 2, 5, 9, 17):
        gap = (1 << bits) + 3
        cols = gap + 2
        mask = torch.zeros(3, cols, dtype=torch.bool)
        mask[0, 0] = mask[0, gap + 1] = True
        mask[1, :4] = True  # small gaps, so that the big one is escaped
        mask[2, 1] = True
        codes = torch.arange(3 * cols).reshape(3, cols) % 3
        codebook = torch.tensor([0.5, -1.25, 2.0])
        args = _args(codes, mask, codebook, device)
        dense = codebook[codes] * mask
        assert torch.equal(decode(**args).cpu(), dense), bits
        _check_forward(forward, args, dense, 3, gen, device)


def test_launchers_check_what_the_kernels_trust(gen):
    decode, forward = _native("cpu")
    args, _ = _sample(5, 9, 4, 0.5, gen)
    with pytest.raises(ValueError, match="gap_lut"):
        decode(**{**args, "gap_lut": args["gap_lut"][:-1]})
    with pytest.raises(ValueError, match="row_bits"):
        decode(**{**args, "row_bits": args["row_bits"][:-1]})
    with pytest.raises(ValueError, match="words"):
        decode(**{**args, "words": args["words"].to(torch.int64)})
    with pytest.raises(ValueError, match="escape_bits"):
        decode(**{**args, "escape_bits": 32})
    with pytest.raises(ValueError, match="x must be"):
        forward(torch.zeros(2, 8), **args)


# Streams that break the format. Each case is decoded and multiplied by the CPU kernels in a child
# process; the parent checks that it exits cleanly, that the decode equals the reference wherever
# the reference defines the result (valid tables, any stream, offsets and counts), and that every
# output is bounded otherwise.
_HOSTILE = textwrap.dedent(
    """
    import sys, torch
    from latentops import testing
    from latentops.codecs import encode_hcsr
    from latentops.native import compressed_linear as native
    from latentops.reference import compressed_linear as reference

    device = sys.argv[1]
    gen = torch.Generator().manual_seed(int(sys.argv[2]))
    codes, mask, codebook = testing.compressed_weight_sample(40, 50, 8, 0.7, generator=gen)
    base = encode_hcsr(codes, mask, codebook).kernel_args()
    rows = base["row_nnz"].numel()
    n_words = base["words"].numel()
    big = 1 << 40

    def garbage(n):
        return torch.randint(-(1 << 31), 1 << 31, (n,), generator=gen, dtype=torch.int64).to(torch.int32)

    defined = {
        "random words": dict(words=garbage(n_words)),
        "random words, escape_bits 31": dict(words=garbage(n_words), escape_bits=31),
        "row_bits past the stream": dict(row_bits=base["row_bits"] + 32 * n_words - 40),
        "row_bits far past the stream": dict(row_bits=torch.randint(0, big, (rows + 1,), generator=gen)),
        "nnz larger than the stream": dict(row_nnz=torch.full((rows,), 1 << 30, dtype=torch.int32)),
        "negative nnz": dict(row_nnz=-base["row_nnz"] - 1),
        "huge gaps": dict(words=garbage(n_words), escape=0, escape_bits=31,
                          gap_lut=torch.zeros_like(base["gap_lut"])),
        "0-bit codes and nnz = 2^31 - 1": dict(
            gap_lut=torch.zeros(1, dtype=torch.int32), gap_bits=0, value_lut=torch.zeros(1, dtype=torch.int32),
            value_bits=0, escape=5, row_nnz=torch.full((rows,), (1 << 31) - 1, dtype=torch.int32)),
    }
    undefined = {
        "symbols outside the codebook and negative ones": dict(
            words=garbage(n_words),
            gap_lut=torch.randint(-(1 << 31), 1 << 31, base["gap_lut"].shape, generator=gen).to(torch.int32),
            value_lut=torch.randint(-(1 << 31), 1 << 31, base["value_lut"].shape, generator=gen).to(torch.int32)),
        "negative escape": dict(words=garbage(n_words), escape=-3, escape_bits=7),
        "row_bits before the stream": dict(row_bits=torch.randint(-big, 0, (rows + 1,), generator=gen)),
        "a one-word stream": dict(words=base["words"][:1].clone()),
        "an empty stream": dict(words=base["words"][:0].clone()),
    }
    bound = codebook.abs().max().item()
    for name, change in {**defined, **undefined}.items():
        args = {**base, **change}
        on = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        decode = getattr(native, "compressed_linear_decode_" + device)
        forward = getattr(native, "compressed_linear_forward_" + device)
        dense = decode(**on).cpu()
        assert dense.shape == (rows, 50) and bool((dense.abs() <= bound).all()), name
        if name in defined:
            assert torch.equal(dense, reference.compressed_linear_decode(**args)), name
        for batch in (1, 5, 20):
            x = torch.randn(batch, 50, generator=gen)
            y = forward(x.to(device), **on).cpu()
            assert y.shape == (batch, rows) and bool(y.isfinite().all()), name
            if name in defined:
                expected = x.double() @ dense.double().T
                assert (y.double() - expected).abs().max().item() <= 1e-4 * (1 + expected.abs().max().item()), name
    print("ok")
    """
)


@pytest.mark.parametrize("device", _devices())
def test_hostile_streams_neither_crash_nor_hang(device, gen):
    seed = int(torch.randint(0, 1 << 30, (1,), generator=gen))
    run = subprocess.run(
        [sys.executable, "-c", _HOSTILE, device, str(seed)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stdout, run.stderr[-3000:])


def test_reference_is_the_spec_here(gen):
    """The reference these tests compare with decodes what the encoder wrote."""
    codes, mask, codebook = testing.compressed_weight_sample(17, 130, 32, 0.9, generator=gen)
    args = encode_hcsr(codes, mask, codebook).kernel_args()
    assert torch.equal(reference.compressed_linear_decode(**args), codebook[codes] * mask)
