"""The spec of compressed_linear: the hcsr decoder of csrc/include/latentops/compressed_linear.h in
torch, vectorized over rows (each step decodes the next kept entry of every row still going), and
y = x·Wᵀ on the decoded matrix. It is also the `torch` backend of latentops.compressed_linear and the
validator of hcsr matrices read from files (strict=True: every bound checked, by name)."""

from __future__ import annotations

import torch

from latentops.codecs.errors import CorruptedFileError

_LOW32 = 0xFFFFFFFF


def decode_entries(
    words, row_bits, row_nnz, gap_lut, value_lut, cols, gap_bits, value_bits, escape, escape_bits, *, strict: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, codebook index) of every kept entry, int64 on words' device.

    strict=False follows the kernels' rule on a malformed stream: a row ends early at a column ≥
    cols or a read past the stream. strict=True raises CorruptedFileError instead, and also where a
    row's codes do not end exactly at its declared bit length."""
    device = words.device
    stream = words.to(torch.int64) & _LOW32
    n_words = stream.numel()
    rows = row_nnz.numel()
    row = torch.arange(rows, device=device)[row_nnz > 0]
    p = row_bits[:-1][row].clone()
    left = row_nnz.to(torch.int64)[row]
    col = torch.full_like(row, -1)
    found_rows, found_cols, found_symbols = [], [], []

    def peek(position, width):
        index = position >> 5
        inside = index + 1 < n_words
        index = torch.where(inside, index, 0)
        window = (stream[index] | (stream[index + 1] << 32)) >> (position & 31)
        return window & ((1 << width) - 1), inside

    while row.numel():
        bits, ok = peek(p, gap_bits)
        entry = gap_lut[bits]
        p = p + (entry & 15)
        symbol = entry >> 4
        raw, raw_ok = peek(p, escape_bits)
        escaped = symbol == escape
        gap = torch.where(escaped, escape + raw, symbol)
        ok &= raw_ok | ~escaped
        p = p + torch.where(escaped, escape_bits, 0)
        col = col + gap + 1
        bits, value_ok = peek(p, value_bits)
        entry = value_lut[bits]
        p = p + (entry & 15)
        ok &= value_ok & (col < cols)
        if strict:
            ok &= p <= row_bits[row + 1]
            if not bool(ok.all()):
                bad = int(row[~ok][0])
                raise CorruptedFileError(
                    f"hcsr matrix: row {bad}'s codes run past its bits, the stream or the {cols} columns"
                )
        found_rows.append(row[ok])
        found_cols.append(col[ok])
        found_symbols.append((entry >> 4)[ok])
        left = left - 1
        going = ok & (left > 0)
        if strict and not bool((p[~going] == row_bits[row[~going] + 1]).all()):
            bad = int(row[~going][p[~going] != row_bits[row[~going] + 1]][0])
            raise CorruptedFileError(f"hcsr matrix: row {bad}'s codes do not end at its declared bit length")
        row, p, left, col = row[going], p[going], left[going], col[going]
    if strict:
        empty = row_nnz == 0
        if not bool((row_bits[:-1][empty] == row_bits[1:][empty]).all()):
            raise CorruptedFileError("hcsr matrix: a row without kept entries declares bits")
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return tuple(torch.cat(found) if found else empty for found in (found_rows, found_cols, found_symbols))


def compressed_linear_decode(
    words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
) -> torch.Tensor:
    """The dense float32 (rows, cols) matrix."""
    rows, columns, symbols = decode_entries(
        words, row_bits, row_nnz, gap_lut, value_lut, cols, gap_bits, value_bits, escape, escape_bits, strict=False
    )
    dense = torch.zeros(row_nnz.numel(), cols, dtype=torch.float32, device=words.device)
    dense[rows, columns] = codebook.to(torch.float32)[symbols]
    return dense


def compressed_linear_forward(
    x, words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
) -> torch.Tensor:
    """y = x·Wᵀ, (batch, rows), in float64 for a float64 x and float32 otherwise."""
    dense = compressed_linear_decode(
        words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
    )
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return x.to(dtype) @ dense.to(dtype).T
