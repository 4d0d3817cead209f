"""csc: Deep Compression's relative-index sparse layout (Han, Mao, Dally, ICLR 2016, Sect. 2 and
Fig. 2), not Huffman-coded (the paper's Huffman stage is what hcsr and sham add).

Per output unit (a column of the paper's (in, out) W, a row of torch's (out, in) weight), its kept
entries in increasing input index, each a fixed-width field of two parts: the relative index, b
bits holding the gap (inputs skipped since the previous kept entry, or since the unit's start), and
the value, the entry's codebook index in ⌈log2(k + 1)⌉ bits. A gap ≥ 2^b is bridged by filler
entries as in the paper's Fig. 2: each filler skips 2^b − 1 inputs and stands at the next, with the
reserved value index k (decoded as +0.0), so a gap g costs ⌊g / 2^b⌋ fillers. (A reserved index
instead of a codebook zero: the codebook need not hold a zero, and a kept entry whose value is 0.0
stays apart from a filler.) Column pointers (cumulative entries, fillers included, per unit) at the
smallest width. b is chosen in 1..12 to minimize the size.

Parts: fields (int32: the uint32 stream of huffman.pack_bits, two zero words of padding),
column_pointers (smallest unsigned, rows + 1), codebook (float32, k). Meta: index_bits, value_bits.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from latentops.codecs import huffman
from latentops.codecs._shared import row_gaps, shared_arrays
from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.matrix import UNSIGNED_DTYPES, CompressedMatrix, smallest_unsigned

MAX_INDEX_BITS = 12
MAX_FIELD_BITS = 32  # what huffman.read_bits reads in one go


class CscMatrix(CompressedMatrix):
    format = "csc"
    part_dtypes: ClassVar[dict[str, tuple[torch.dtype, ...]]] = {
        "fields": (torch.int32,),
        "column_pointers": UNSIGNED_DTYPES,
        "codebook": (torch.float32,),
    }
    meta_keys = ("index_bits", "value_bits")

    @classmethod
    def encode(cls, shared, *, index_bits: int | None = None) -> CscMatrix:
        """index_bits: b, or None for the b in 1..12 of the smallest matrix."""
        codes, codebook, mask = shared_arrays(shared)
        rows, cols = codes.shape
        k = codebook.size
        value_bits = k.bit_length()  # ⌈log2(k + 1)⌉: indices 0..k, k the filler
        if value_bits + MAX_INDEX_BITS > MAX_FIELD_BITS:
            raise ValueError(f"csc holds codebooks of k < {1 << (MAX_FIELD_BITS - MAX_INDEX_BITS)}, got k = {k}")
        unit, position = np.nonzero(mask)
        gaps = row_gaps(unit, position)

        def entries(b: int) -> int:
            return unit.size + int((gaps >> b).sum())

        if index_bits is None:
            pointer_bytes = lambda e: smallest_unsigned([e]).element_size() * (rows + 1)  # noqa: E731
            index_bits = min(
                range(1, MAX_INDEX_BITS + 1),
                key=lambda b: entries(b) * (b + value_bits) + 8 * pointer_bytes(entries(b)),
            )
        if not 1 <= index_bits <= MAX_INDEX_BITS:
            raise ValueError(f"index_bits must be in [1, {MAX_INDEX_BITS}], got {index_bits}")
        b = index_bits
        fillers = gaps >> b
        group = fillers + 1  # each kept entry: its fillers, then itself
        owner = np.repeat(np.arange(unit.size), group)
        last = np.cumsum(group) - 1
        is_entry = np.zeros(owner.size, dtype=bool)
        is_entry[last] = True
        gap_field = np.where(is_entry, (gaps & ((1 << b) - 1))[owner], (1 << b) - 1)
        value_field = np.where(is_entry, codes[unit, position][owner], k)
        width = b + value_bits
        words, _ = huffman.pack_bits(
            (gap_field | (value_field << b)).astype(np.uint64), np.full(owner.size, width, dtype=np.int64)
        )
        per_unit = np.bincount(unit[owner], minlength=rows) if owner.size else np.zeros(rows, dtype=np.int64)
        return cls(
            (rows, cols),
            dict(
                fields=torch.from_numpy(words.view(np.int32)),
                column_pointers=smallest_unsigned(np.r_[0, np.cumsum(per_unit)]),
                codebook=torch.from_numpy(codebook.copy()),
            ),
            dict(index_bits=b, value_bits=value_bits),
        )

    def _entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit, input position, value index) of every stored entry, fillers included."""
        b, value_bits = self.meta["index_bits"], self.meta["value_bits"]
        pointers = self.parts["column_pointers"].to(torch.int64).numpy()
        count = int(pointers[-1])
        width = b + value_bits
        fields = huffman.read_bits(
            self.parts["fields"].numpy().view(np.uint32),
            np.arange(count, dtype=np.int64) * width,
            np.full(count, width),
        ).astype(np.int64)
        unit = np.repeat(np.arange(pointers.size - 1), np.diff(pointers))
        steps = np.cumsum((fields & ((1 << b) - 1)) + 1)
        before = np.r_[0, steps][pointers[:-1]]  # the steps of earlier units
        return unit, steps - before[unit] - 1, fields >> b

    def decode(self) -> torch.Tensor:
        rows, cols = self.shape
        dense = np.zeros((rows, cols), dtype=np.float32)
        unit, position, value = self._entries()
        kept = value != self.parts["codebook"].numel()
        dense[unit[kept], position[kept]] = self.parts["codebook"].numpy()[value[kept]]
        return torch.from_numpy(dense)

    def validate(self) -> None:
        super().validate()
        where = "csc matrix"
        rows, cols = self.shape
        p = self.parts
        k = p["codebook"].numel()
        b, value_bits = self.meta["index_bits"], self.meta["value_bits"]
        if k == 0 or not bool(p["codebook"].isfinite().all()):
            raise CorruptedFileError(f"{where}: codebook must hold k ≥ 1 finite values")
        if not 1 <= b <= MAX_INDEX_BITS:
            raise CorruptedFileError(f"{where}: index_bits {b} must be in [1, {MAX_INDEX_BITS}]")
        if value_bits != k.bit_length() or b + value_bits > MAX_FIELD_BITS:
            raise CorruptedFileError(f"{where}: value_bits {value_bits} must be ⌈log2(k + 1)⌉ = {k.bit_length()}")
        pointers = p["column_pointers"].to(torch.int64)
        if pointers.numel() != rows + 1 or int(pointers[0]) != 0 or bool((pointers.diff() < 0).any()):
            raise CorruptedFileError(f"{where}: column_pointers must be {rows + 1} non-decreasing offsets from 0")
        count = int(pointers[-1])
        n_words = p["fields"].numel()
        if (count * (b + value_bits) + 31) // 32 + 2 != n_words:
            raise CorruptedFileError(
                f"{where}: fields has {n_words} words, {count} entries of {b + value_bits} bits need "
                f"{(count * (b + value_bits) + 31) // 32} + 2 of padding"
            )
        if bool(p["fields"][-2:].ne(0).any()):
            raise CorruptedFileError(f"{where}: fields must end in two zero words of padding")
        if not count:
            return
        _, position, value = self._entries()
        if int(value.max()) > k:
            raise CorruptedFileError(f"{where}: a value index {int(value.max())} > k = {k} (the filler)")
        if int(position.max()) >= cols:
            raise CorruptedFileError(f"{where}: an entry's position {int(position.max())} is out of range [0, {cols})")

    def paper_psi(self) -> float:
        return csc_paper_psi(self.shape, int((self._entries()[2] != self.parts["codebook"].numel()).sum()))


def csc_paper_psi(shape: tuple[int, int], q: int) -> float:
    """The ICPR 2020 paper's ψ of plain CSC (Marinò et al., Sect. III-A): ψ_CSC = (2q + m + 1)/(nm),
    one word for each of the q values, q row indices and m + 1 column pointers. Deep Compression's
    packed layout here is far smaller; this is the baseline the paper compares with."""
    n, m = shape[1], shape[0]
    return (2 * q + m + 1) / (n * m) if n * m else 0.0
