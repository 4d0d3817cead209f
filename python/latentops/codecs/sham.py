"""sham: sparse Huffman Address Map compression (sHAM) of Marinò et al., ICPR 2020, Sect. III-C.

CSC of the paper's W (inputs, outputs), which is CSR of torch's (out, in) weight: per output unit
(a paper column, a torch row), in increasing input index, its non-zero entries. As in the authors'
sparse_huffman_only_data.py (the variant of the paper): only the non-zero values are Huffman-coded,
in one stream (_stream.py: 64-bit words, codes straddle words); the row indices (ri: input index of
each non-zero) and the column counts (cum: non-zeros per output unit) are stored raw, at the
smallest of 1, 2, 4 or 8 bytes (their space_for_row_cum picks one width from the matrix's rows for
both; we pick each from its own values). Non-zero means the entry's float32 bits are not +0.0's.
We add the stream's sync points, as in ham.py, so the values decode vectorized.

Parts: words (int64), values (float32: the alphabet of non-zero values), lengths (uint8), row_indices
and column_counts (smallest unsigned), sync_bits (smallest unsigned). Meta: sync_every.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from latentops.codecs import _stream, huffman
from latentops.codecs._shared import alphabet, shared_arrays
from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.ham import WORD_BITS
from latentops.codecs.matrix import UNSIGNED_DTYPES, CompressedMatrix, smallest_unsigned


class ShamMatrix(CompressedMatrix):
    format = "sham"
    part_dtypes: ClassVar[dict[str, tuple[torch.dtype, ...]]] = {
        "words": (torch.int64,),
        "values": (torch.float32,),
        "lengths": (torch.uint8,),
        "row_indices": UNSIGNED_DTYPES,
        "column_counts": UNSIGNED_DTYPES,
        "sync_bits": UNSIGNED_DTYPES,
    }
    meta_keys = ("sync_every",)

    @classmethod
    def encode(
        cls,
        shared,
        *,
        max_length: int = huffman.DEFAULT_MAX_LENGTH,
        sync_every: int = _stream.DEFAULT_SYNC_EVERY,
    ) -> ShamMatrix:
        codes, codebook, mask = shared_arrays(shared)
        rows, cols = codes.shape
        codebook_bits = codebook.view(np.int32)
        keep = mask & (codebook_bits[np.where(mask, codes, 0)] != 0)
        flat = np.flatnonzero(keep)  # row-major: torch rows (paper columns) in order
        kept_codes = codes.reshape(-1)[flat]
        values, symbol_of, counts = alphabet(codebook_bits, np.bincount(kept_codes, minlength=codebook.size))
        lengths = huffman.huffman_lengths(counts, max_length)
        words, sync, _ = _stream.encode_stream(symbol_of[kept_codes], lengths, sync_every)
        return cls(
            (rows, cols),
            dict(
                words=torch.from_numpy(words),
                values=torch.from_numpy(values.astype(np.int32).view(np.float32)),
                lengths=torch.from_numpy(lengths),
                row_indices=smallest_unsigned(flat % max(cols, 1)),
                column_counts=smallest_unsigned(np.bincount(flat // max(cols, 1), minlength=rows)),
                sync_bits=smallest_unsigned(sync),
            ),
            dict(sync_every=int(sync_every)),
        )

    def _symbols(self, strict: bool) -> np.ndarray:
        p = self.parts
        return _stream.decode_stream(
            p["words"].numpy(),
            p["sync_bits"].to(torch.int64).numpy(),
            p["lengths"].numpy(),
            p["row_indices"].numel(),
            self.meta["sync_every"],
            strict=strict,
            where="sham matrix: words",
        )

    def decode(self) -> torch.Tensor:
        rows, cols = self.shape
        dense = torch.zeros(rows * cols, dtype=torch.float32)
        q = self.parts["row_indices"].numel()
        if q:
            unit = torch.repeat_interleave(
                torch.arange(rows, dtype=torch.int64), self.parts["column_counts"].to(torch.int64)
            )
            index = unit * cols + self.parts["row_indices"].to(torch.int64)
            symbols = torch.from_numpy(self._symbols(strict=False).astype(np.int64))
            dense[index] = self.parts["values"][symbols]
        return dense.reshape(rows, cols)

    def validate(self) -> None:
        super().validate()
        where = "sham matrix"
        rows, cols = self.shape
        p = self.parts
        if p["values"].numel() != p["lengths"].numel():
            raise CorruptedFileError(f"{where}: values and lengths must have one entry per symbol")
        if not bool(p["values"].isfinite().all()):
            raise CorruptedFileError(f"{where}: values holds a NaN or an infinity")
        if bool((p["values"].view(torch.int32) == 0).any()):
            raise CorruptedFileError(f"{where}: values holds a zero (zeros are not coded in sham)")
        counts = p["column_counts"].to(torch.int64)
        ri = p["row_indices"].to(torch.int64)
        if counts.numel() != rows:
            raise CorruptedFileError(f"{where}: column_counts has {counts.numel()} entries, expected {rows}")
        if rows and int(counts.max()) > cols:
            raise CorruptedFileError(f"{where}: column_counts declares {int(counts.max())} non-zeros > {cols}")
        if int(counts.sum()) != ri.numel():
            raise CorruptedFileError(
                f"{where}: column_counts sum to {int(counts.sum())}, row_indices has {ri.numel()} entries"
            )
        if ri.numel():
            if int(ri.max()) >= cols:
                raise CorruptedFileError(f"{where}: row_indices holds {int(ri.max())}, out of range [0, {cols})")
            starts = torch.zeros(ri.numel(), dtype=torch.bool)
            starts[(counts.cumsum(0) - counts)[counts > 0]] = True
            if bool(((ri[1:] <= ri[:-1]) & ~starts[1:]).any()):
                raise CorruptedFileError(f"{where}: row_indices must increase within each column")
        _stream.check_stream(
            p["words"].numpy(), p["sync_bits"].to(torch.int64).numpy(), p["lengths"].numpy(), ri.numel(),
            self.meta["sync_every"], where,
        )  # fmt: skip
        self._symbols(strict=True)

    def paper_psi(self, corrected: bool = False) -> float:
        return sham_paper_psi(
            self.shape, self.parts["row_indices"].numel(), int(self.parts["lengths"].count_nonzero()), corrected
        )


def sham_paper_psi(
    shape: tuple[int, int], q: int, k: int, corrected: bool = False, word_bits: int = WORD_BITS
) -> float:
    """The paper's closed form of sHAM's occupancy ratio with k distinct non-zero values, Marinò et
    al. ICPR 2020 Sect. III-C (ICPR2020_sHAM.pdf of giosumarin/ICPR2020_sHAM):
    ψ_sHAM = s(1 + log k)/B + 6k/(nm) + (n + m + 1)/(nm), s = q/(nm) the density, q the non-zeros.

    Its last term counts B bits for each of n row indices and m + 1 column pointers, but ri has one
    entry per non-zero (q of them, as its own ψ_CSC = (2q + m + 1)/(nm) counts): it undercounts
    them. corrected=True counts q + m + 1 words instead."""
    n, m = shape[1], shape[0]
    if n * m == 0:
        return 0.0
    s = q / (n * m)
    index_words = q + m + 1 if corrected else n + m + 1
    return s * (1 + math.log2(max(k, 1))) / word_bits + 6 * k / (n * m) + index_words / (n * m)
