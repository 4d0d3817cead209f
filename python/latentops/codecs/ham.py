"""ham: Huffman Address Map compression (HAM) of Marinò, Ghidoli, Frasca, Malchiodi, "Compression
strategies and space-conscious representations for deep neural networks", ICPR 2020, Sect. III-B.

Every entry of W, zero included, is Huffman-coded: the alphabet is the matrix's distinct values
(zero is one more symbol), and the codes of all entries form one bit stream, packed in 64-bit words
(see _stream.py: a code may straddle two words, as in the authors' code). The entries go column by
column of the paper's W, which is (inputs, outputs) for y = x·W; so a paper column is one output
unit, which is a ROW of torch's (out, in) weight: the stream is torch's weight in row-major order.

The paper's format is the words and the code; we add `sync_bits` (a sync point every `sync_every`
symbols, _stream.py) so that decoding is vectorized: one table lookup per symbol, all segments at a
time, never bit by bit and no Python loop over symbols.

Parts: words (int64: the uint64 stream), values (float32: the alphabet, by symbol), lengths (uint8:
canonical code lengths), sync_bits (the smallest unsigned width). Meta: sync_every.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from latentops.codecs import _stream, huffman
from latentops.codecs._shared import alphabet, shared_arrays
from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.matrix import UNSIGNED_DTYPES, CompressedMatrix, smallest_unsigned

# B of the paper: bits of one memory word, here the float32 of the dense matrix
WORD_BITS = 32


class HamMatrix(CompressedMatrix):
    format = "ham"
    part_dtypes: ClassVar[dict[str, tuple[torch.dtype, ...]]] = {
        "words": (torch.int64,),
        "values": (torch.float32,),
        "lengths": (torch.uint8,),
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
    ) -> HamMatrix:
        codes, codebook, mask = shared_arrays(shared)
        k = codebook.size
        # extended index: 0 = a pruned entry (+0.0), 1 + c = codebook entry c
        extended = np.where(mask, codes + 1, 0).reshape(-1)
        counts = np.bincount(extended, minlength=k + 1)
        extended_bits = np.r_[np.int32(0), codebook.view(np.int32)]
        values, symbol_of, symbol_counts = alphabet(extended_bits, counts)
        lengths = huffman.huffman_lengths(symbol_counts, max_length)
        symbols = symbol_of.astype(np.int16 if values.size <= 1 << 15 else np.int32)[extended]
        words, sync, _ = _stream.encode_stream(symbols, lengths, sync_every)
        return cls(
            codes.shape,
            dict(
                words=torch.from_numpy(words),
                values=torch.from_numpy(values.astype(np.int32).view(np.float32)),
                lengths=torch.from_numpy(lengths),
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
            self.shape[0] * self.shape[1],
            self.meta["sync_every"],
            strict=strict,
            where="ham matrix: words",
        )

    def decode(self) -> torch.Tensor:
        values = self.parts["values"].numpy()
        if values.size == 0:
            return torch.zeros(self.shape, dtype=torch.float32)
        return torch.from_numpy(values[self._symbols(strict=False)].reshape(self.shape))

    def validate(self) -> None:
        super().validate()
        where = "ham matrix"
        p = self.parts
        if p["values"].numel() != p["lengths"].numel():
            raise CorruptedFileError(f"{where}: values and lengths must have one entry per symbol")
        if not bool(p["values"].isfinite().all()):
            raise CorruptedFileError(f"{where}: values holds a NaN or an infinity")
        _stream.check_stream(
            p["words"].numpy(),
            p["sync_bits"].to(torch.int64).numpy(),
            p["lengths"].numpy(),
            self.shape[0] * self.shape[1],
            self.meta["sync_every"],
            where,
        )
        self._symbols(strict=True)

    def paper_psi(self) -> float:
        return ham_paper_psi(self.shape, int(self.parts["lengths"].count_nonzero()))


def ham_paper_psi(shape: tuple[int, int], k: int, word_bits: int = WORD_BITS) -> float:
    """The paper's closed-form bound on HAM's occupancy ratio, Marinò et al. ICPR 2020 Sect. III-B
    (ICPR2020_sHAM.pdf of giosumarin/ICPR2020_sHAM): ψ_HAM = (1 + log k)/B + 6k/(nm), k the distinct
    values (zero included), B the bits of one word, n×m the matrix. Worst case of Huffman (all
    symbols equally likely) and 6 words per symbol for the two B-tree dictionaries."""
    n, m = shape[1], shape[0]  # the paper's W is (inputs, outputs)
    if n * m == 0:
        return 0.0
    return (1 + math.log2(max(k, 1))) / word_bits + 6 * k / (n * m)
