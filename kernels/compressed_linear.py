"""Triton compressed_linear: decode of an hcsr matrix and y = x·Wᵀ on the compressed form.

The bit stream is csrc/include/latentops/compressed_linear.h's: every row is an independent
LSB-first stream of (gap code, [escape bits], value code) pairs, one table lookup per code.

Layout of the work: a program owns BLOCK_R rows, one row per lane; every lane decodes its own row
serially, all lanes stepping together up to the block's largest row_nnz, a lane masked off once its
row is done (or ends early under the header's safety rule). The forward keeps a (BLOCK_B, BLOCK_R)
fp32 accumulator and, per decoded entry, adds x[b, col]·value for its block of batch rows; the
grid's second axis covers the batch in BLOCK_B blocks, so a batch of more than BLOCK_B decodes each
row once per batch block (in parallel programs; decoding is the serial part, so blocks stay large).
The decode stage scatters each value into a zeroed dense matrix.

Each lane sums its row in increasing column order, so results are deterministic run to run.

peek(p) = low bits of (words[p >> 5] | words[(p >> 5) + 1] << 32) >> (p & 31): both words are
loaded as int32 and widened with a 0xFFFFFFFF mask (a plain widening would sign-extend the low word
over the high one). Safety: a lane stops (and writes nothing for that entry) where the word index is
outside [0, n_words − 1), the column reaches cols, or a table gives a codebook index ≥ k, so no
input makes a load or store leave its tensor.
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# Rows per program: a warp group of lanes on a GPU (one row each); under the interpreter one
# program costs per op, not per lane, so fewer, wider programs run faster.
_BLOCK_R = 256 if _INTERPRET else 128
_MAX_BLOCK_B = 16


@triton.jit
def _peek(words_ptr, p, n_words, going, low_mask):
    """(the low bits of the 64-bit window at bit p selected by low_mask, whether the read was
    inside the stream). p: int64 lanes; reads nothing for lanes not going or outside."""
    index = p >> 5
    inside = (index >= 0) & (index + 1 < n_words)
    live = going & inside
    index = tl.where(live, index, 0)
    lo = tl.load(words_ptr + index, mask=live, other=0).to(tl.int64) & 0xFFFFFFFF
    hi = tl.load(words_ptr + index + 1, mask=live, other=0).to(tl.int64) & 0xFFFFFFFF
    window = (lo | (hi << 32)) >> (p & 31)
    return window & low_mask, inside


@triton.jit
def _next_entry(
    words_ptr,
    gap_lut_ptr,
    value_lut_ptr,
    p,
    col,
    going,
    n_words,
    cols,
    k,
    gap_mask,
    value_mask,
    escape,
    escape_bits,
    escape_mask,
    HAS_ESCAPE: tl.constexpr,
):
    """Decode one (gap, value) pair per going lane: (p, col, codebook index, ok). ok: the entry is
    well inside the stream, the columns and the codebook (a lane that is not ok stops)."""
    bits, ok = _peek(words_ptr, p, n_words, going, gap_mask)
    entry = tl.load(gap_lut_ptr + bits, mask=going, other=0)
    p += (entry & 15).to(tl.int64)
    symbol = (entry >> 4).to(tl.int64)
    gap = symbol
    if HAS_ESCAPE:  # escape_bits > 0 (with 0 raw bits, an escaped gap is the escape itself)
        escaped = symbol == escape
        raw, raw_ok = _peek(words_ptr, p, n_words, going & escaped, escape_mask)
        ok &= raw_ok | (~escaped)
        gap = tl.where(escaped, escape + raw, symbol)
        p += tl.where(escaped, escape_bits, 0).to(tl.int64)
    col += gap + 1
    bits, value_ok = _peek(words_ptr, p, n_words, going, value_mask)
    entry = tl.load(value_lut_ptr + bits, mask=going, other=0)
    p += (entry & 15).to(tl.int64)
    index = entry >> 4
    ok &= value_ok & (col < cols) & (index < k) & going
    return p, col, index, ok


@triton.jit
def _compressed_linear_decode_kernel(
    words_ptr,
    row_bits_ptr,
    row_nnz_ptr,
    gap_lut_ptr,
    value_lut_ptr,
    codebook_ptr,
    dense_ptr,
    n_words,
    rows,
    cols,
    k,
    gap_mask,
    value_mask,
    escape,
    escape_bits,
    escape_mask,
    HAS_ESCAPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = offs_r < rows
    left = tl.load(row_nnz_ptr + offs_r, mask=row_mask, other=0)
    p = tl.load(row_bits_ptr + offs_r, mask=row_mask, other=0)
    col = tl.full([BLOCK_R], -1, dtype=tl.int64)
    going = left > 0
    dense_rows = dense_ptr + offs_r.to(tl.int64) * cols
    for _ in range(0, tl.max(left, axis=0)):
        p, col, index, ok = _next_entry(
            words_ptr,
            gap_lut_ptr,
            value_lut_ptr,
            p,
            col,
            going,
            n_words,
            cols,
            k,
            gap_mask,
            value_mask,
            escape,
            escape_bits,
            escape_mask,
            HAS_ESCAPE,
        )
        value = tl.load(codebook_ptr + index, mask=ok, other=0.0)
        tl.store(dense_rows + tl.where(ok, col, 0), value, mask=ok)
        left -= 1
        going = ok & (left > 0)


@triton.jit
def _compressed_linear_forward_kernel(
    x_ptr,
    words_ptr,
    row_bits_ptr,
    row_nnz_ptr,
    gap_lut_ptr,
    value_lut_ptr,
    codebook_ptr,
    y_ptr,
    batch,
    n_words,
    rows,
    cols,
    k,
    gap_mask,
    value_mask,
    escape,
    escape_bits,
    escape_mask,
    HAS_ESCAPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = offs_r < rows
    b_mask = offs_b < batch
    left = tl.load(row_nnz_ptr + offs_r, mask=row_mask, other=0)
    p = tl.load(row_bits_ptr + offs_r, mask=row_mask, other=0)
    col = tl.full([BLOCK_R], -1, dtype=tl.int64)
    going = left > 0
    x_rows = x_ptr + offs_b.to(tl.int64)[:, None] * cols
    acc = tl.zeros([BLOCK_B, BLOCK_R], dtype=tl.float32)
    for _ in range(0, tl.max(left, axis=0)):
        p, col, index, ok = _next_entry(
            words_ptr,
            gap_lut_ptr,
            value_lut_ptr,
            p,
            col,
            going,
            n_words,
            cols,
            k,
            gap_mask,
            value_mask,
            escape,
            escape_bits,
            escape_mask,
            HAS_ESCAPE,
        )
        value = tl.load(codebook_ptr + index, mask=ok, other=0.0)
        xv = tl.load(x_rows + tl.where(ok, col, 0)[None, :], mask=b_mask[:, None] & ok[None, :], other=0.0)
        acc += xv * value[None, :]
        left -= 1
        going = ok & (left > 0)
    y_idx = offs_b.to(tl.int64)[:, None] * rows + offs_r[None, :]
    tl.store(y_ptr + y_idx, acc, mask=b_mask[:, None] & row_mask[None, :])


def _scalars(words, codebook, gap_bits, value_bits, escape_bits):
    return dict(
        n_words=words.numel(),
        k=codebook.numel(),
        gap_mask=(1 << gap_bits) - 1,
        value_mask=(1 << value_bits) - 1,
        escape_mask=(1 << escape_bits) - 1,
    )


def _device_guard(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def compressed_linear_decode(
    words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
) -> torch.Tensor:
    """The dense float32 (rows, cols) matrix of an hcsr matrix given by its kernel arguments
    (HcsrMatrix.kernel_args): words int32, row_bits int64 (rows + 1), row_nnz int32 (rows), the
    LUTs int32, codebook float32, all contiguous on one device; the rest Python ints."""
    rows = row_nnz.numel()
    dense = torch.zeros(rows, cols, dtype=torch.float32, device=words.device)
    if rows == 0 or cols == 0:
        return dense
    scalars = _scalars(words, codebook, gap_bits, value_bits, escape_bits)
    with _device_guard(words):
        _compressed_linear_decode_kernel[(triton.cdiv(rows, _BLOCK_R),)](
            words,
            row_bits,
            row_nnz,
            gap_lut,
            value_lut,
            codebook,
            dense,
            scalars["n_words"],
            rows,
            cols,
            scalars["k"],
            scalars["gap_mask"],
            scalars["value_mask"],
            escape,
            escape_bits,
            scalars["escape_mask"],
            HAS_ESCAPE=escape_bits > 0,
            BLOCK_R=_BLOCK_R,
        )
    return dense


def compressed_linear_forward(
    x, words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
) -> torch.Tensor:
    """y = x·Wᵀ, float32 (batch, rows), for x float32 (batch, cols) contiguous on the matrix's
    device, batch ≥ 1; the matrix as in compressed_linear_decode."""
    rows = row_nnz.numel()
    batch = x.shape[0]
    if rows == 0 or batch == 0 or cols == 0:
        return torch.zeros(batch, rows, dtype=torch.float32, device=x.device)
    y = torch.empty(batch, rows, dtype=torch.float32, device=x.device)
    block_b = min(_MAX_BLOCK_B, triton.next_power_of_2(batch))
    scalars = _scalars(words, codebook, gap_bits, value_bits, escape_bits)
    grid = (triton.cdiv(rows, _BLOCK_R), triton.cdiv(batch, block_b))
    with _device_guard(x):
        _compressed_linear_forward_kernel[grid](
            x,
            words,
            row_bits,
            row_nnz,
            gap_lut,
            value_lut,
            codebook,
            y,
            batch,
            scalars["n_words"],
            rows,
            cols,
            scalars["k"],
            scalars["gap_mask"],
            scalars["value_mask"],
            escape,
            escape_bits,
            scalars["escape_mask"],
            HAS_ESCAPE=escape_bits > 0,
            BLOCK_R=_BLOCK_R,
            BLOCK_B=block_b,
        )
    return y
