"""hcsr: latentops' own format, Huffman-coded CSR with one independent bit stream per row.

Per row of W (rows = output units, so y = x·Wᵀ reads one row per output), in increasing column
order, each kept entry is a pair of codes: its column gap (columns skipped since the previous kept
entry, Huffman-coded; gaps ≥ `escape` as the escape symbol followed by gap − escape in
`escape_bits` raw bits) and its codebook index (Huffman-coded). The rows' streams are concatenated;
a table of per-row bit lengths and kept counts lets every row be decoded on its own: threads on
the CPU, threads or warps on the GPU. csrc/include/latentops/compressed_linear.h gives the decoder
bit by bit.

Why it is smaller than sHAM: positions cost the entropy of the gaps (≈ H(1 − p)/(1 − p) bits per
kept entry at sparsity p, 5.8 bits at 95%) instead of a raw 16- or 32-bit row index; values cost
their Huffman code as in sHAM. Why it decodes faster: one table lookup per symbol and independent
rows, where the sHAM authors' code walks its Huffman tree bit by bit through one stream.

Parts: words (int32: the uint32 stream, padded with two zero words), row_bit_lengths and row_nnz
(the smallest unsigned width), gap_lengths and value_lengths (uint8 canonical code lengths),
codebook (float32). Meta: escape, escape_bits.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import torch

from latentops.codecs import huffman
from latentops.codecs._shared import row_gaps, shared_arrays
from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.matrix import UNSIGNED_DTYPES, CompressedMatrix, smallest_unsigned
from latentops.reference.compressed_linear import decode_entries

# The gap alphabet has at most this many symbols, so its table keeps symbol << 4 within 16 bits.
MAX_ESCAPE = 4095


class HcsrMatrix(CompressedMatrix):
    format = "hcsr"
    part_dtypes: ClassVar[dict[str, tuple[torch.dtype, ...]]] = {
        "words": (torch.int32,),
        "row_bit_lengths": UNSIGNED_DTYPES,
        "row_nnz": UNSIGNED_DTYPES,
        "gap_lengths": (torch.uint8,),
        "value_lengths": (torch.uint8,),
        "codebook": (torch.float32,),
    }
    meta_keys = ("escape", "escape_bits")

    @classmethod
    def encode(cls, shared, *, max_length: int = huffman.DEFAULT_MAX_LENGTH) -> HcsrMatrix:
        fields = (getattr(shared, name, None) for name in ("codes", "mask", "codebook"))
        return encode_hcsr(*fields, max_length=max_length)  # shared_arrays names a missing one

    def __init__(self, shape, parts, meta=None):
        super().__init__(shape, parts, meta)
        self._kernel_args: dict[torch.device, dict] = {}

    def kernel_args(self, device: torch.device | str = "cpu") -> dict:
        """The arguments of the compressed_linear stages (words … escape_bits) on `device`, built
        once per device. The CPU ones are built by encode_hcsr and validate(), outside any
        torch.compile trace (their tables come from numpy); other devices' are copies of them."""
        device = torch.device(device)
        if device in self._kernel_args:
            return self._kernel_args[device]
        cpu = self._kernel_args.get(torch.device("cpu"))
        if cpu is None:
            cpu = self._kernel_args[torch.device("cpu")] = self._build_kernel_args()
        if device.type == "cpu":
            return cpu
        moved = {name: v.to(device) if isinstance(v, torch.Tensor) else v for name, v in cpu.items()}
        if not torch.compiler.is_compiling():
            self._kernel_args[device] = moved
        return moved

    def _build_kernel_args(self) -> dict:
        gap_lut, gap_bits = huffman.decode_table(self.parts["gap_lengths"].numpy())
        value_lut, value_bits = huffman.decode_table(self.parts["value_lengths"].numpy())
        lengths = self.parts["row_bit_lengths"].to(torch.int64)
        return dict(
            words=self.parts["words"].contiguous(),
            row_bits=torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]),
            row_nnz=self.parts["row_nnz"].to(torch.int32),
            gap_lut=torch.from_numpy(gap_lut),
            value_lut=torch.from_numpy(value_lut),
            codebook=self.parts["codebook"].contiguous(),
            cols=self.shape[1],
            gap_bits=gap_bits,
            value_bits=value_bits,
            escape=self.meta["escape"],
            escape_bits=self.meta["escape_bits"],
        )

    def decode(self) -> torch.Tensor:
        """On the CPU by the fastest backend there (latentops.decompress: every backend gives the
        same bits)."""
        from latentops.ops.compressed_linear import decompress  # the op imports this module

        return decompress(self)

    def validate(self) -> None:
        super().validate()
        where = "hcsr matrix"
        rows, cols = self.shape
        p = self.parts
        if p["row_bit_lengths"].numel() != rows or p["row_nnz"].numel() != rows:
            raise CorruptedFileError(f"{where}: row_bit_lengths and row_nnz must have {rows} entries (the rows)")
        if p["codebook"].numel() != p["value_lengths"].numel() or p["codebook"].numel() == 0:
            raise CorruptedFileError(f"{where}: codebook and value_lengths must have the same k ≥ 1 entries")
        if not bool(p["codebook"].isfinite().all()):
            raise CorruptedFileError(f"{where}: the codebook holds a NaN or an infinity")
        escape, escape_bits = self.meta["escape"], self.meta["escape_bits"]
        if not 0 <= escape <= MAX_ESCAPE or p["gap_lengths"].numel() != escape + 1:
            raise CorruptedFileError(
                f"{where}: escape {escape} must be in [0, {MAX_ESCAPE}] with escape + 1 gap lengths"
            )
        if not 0 <= escape_bits <= 31:
            raise CorruptedFileError(f"{where}: escape_bits {escape_bits} must be in [0, 31]")
        if p["words"].numel() < 2 or bool(p["words"][-2:].ne(0).any()):
            raise CorruptedFileError(f"{where}: the stream must end in two zero words of padding")
        nnz = p["row_nnz"].to(torch.int64)
        if rows and int(nnz.max()) > cols:
            raise CorruptedFileError(f"{where}: a row declares {int(nnz.max())} kept entries > {cols} columns")
        if int(p["row_bit_lengths"].to(torch.int64).sum()) > 32 * (p["words"].numel() - 2):
            raise CorruptedFileError(f"{where}: the rows' bit lengths run past the end of the stream")
        huffman.check_lengths(p["gap_lengths"].numpy(), f"{where}: gap_lengths")
        huffman.check_lengths(p["value_lengths"].numpy(), f"{where}: value_lengths")
        if int(nnz.sum()) and not (bool(p["gap_lengths"].any()) and bool(p["value_lengths"].any())):
            raise CorruptedFileError(f"{where}: kept entries but an empty code")
        decode_entries(**_without(self.kernel_args(), "codebook"), strict=True)


def _without(args: dict, *names: str) -> dict:
    return {k: v for k, v in args.items() if k not in names}


def encode_hcsr(
    codes: torch.Tensor, mask: torch.Tensor, codebook: torch.Tensor, *, max_length: int = huffman.DEFAULT_MAX_LENGTH
) -> HcsrMatrix:
    """Encode W = codebook[codes]·mask (2-D codes and mask, (k,) codebook) as hcsr. The escape
    threshold is chosen among powers of two (and "no escape") to minimize the stream's size."""
    codes_np, codebook_np, mask_np = shared_arrays(SimpleNamespace(codes=codes, codebook=codebook, mask=mask))
    codebook = torch.from_numpy(codebook_np)
    rows, cols = mask_np.shape
    k = codebook.numel()
    kept_rows, kept_cols = np.nonzero(mask_np)  # row-major: rows in order, columns increasing
    symbols = codes_np[kept_rows, kept_cols]
    if np.unique(symbols).size > 1 << max_length:
        raise ValueError(
            f"hcsr codes at most {1 << max_length} distinct values per matrix, got {np.unique(symbols).size}"
        )
    row_nnz = np.bincount(kept_rows, minlength=rows)
    gaps = row_gaps(kept_rows, kept_cols)

    escape, escape_bits, gap_lengths = _best_escape(gaps, max_length)
    value_lengths = huffman.huffman_lengths(np.bincount(symbols, minlength=k), max_length)
    gap_words, gap_code_bits = huffman.code_words(gap_lengths)
    value_words, value_code_bits = huffman.code_words(value_lengths)

    # Three fields per kept entry: gap code, raw escape bits (0 bits unless escaped), value code.
    gap_symbols = np.minimum(gaps, escape)
    escaped = gaps >= escape
    fields = np.stack(
        [gap_words[gap_symbols], np.where(escaped, gaps - escape, 0).astype(np.uint64), value_words[symbols]], 1
    ).reshape(-1)
    field_bits = np.stack([gap_code_bits[gap_symbols], np.where(escaped, escape_bits, 0), value_code_bits[symbols]], 1)
    words, _ = huffman.pack_bits(fields, field_bits.reshape(-1))
    row_bit_lengths = np.bincount(kept_rows, weights=field_bits.sum(1), minlength=rows).astype(np.int64)
    matrix = HcsrMatrix(
        (rows, cols),
        dict(
            words=torch.from_numpy(words.view(np.int32)),
            row_bit_lengths=smallest_unsigned(row_bit_lengths),
            row_nnz=smallest_unsigned(row_nnz),
            gap_lengths=torch.from_numpy(gap_lengths),
            value_lengths=torch.from_numpy(value_lengths),
            codebook=codebook,
        ),
        dict(escape=int(escape), escape_bits=int(escape_bits)),
    )
    matrix.kernel_args()  # the decode tables, built here rather than inside a torch.compile trace
    return matrix


def _best_escape(gaps: np.ndarray, max_length: int) -> tuple[int, int, np.ndarray]:
    """(escape, escape_bits, gap code lengths) of the smallest gap stream."""
    if gaps.size == 0:
        return 0, 0, np.zeros(1, dtype=np.uint8)
    top = int(gaps.max())
    candidates = {e for e in (1 << j for j in range(13)) if e <= min(top, MAX_ESCAPE)}
    if top + 1 <= MAX_ESCAPE:
        candidates.add(top + 1)  # no escape at all
    histogram = np.bincount(gaps, minlength=top + 1)
    best = None
    for escape in sorted(candidates):
        counts = np.r_[histogram[:escape], histogram[escape:].sum()]
        lengths = huffman.huffman_lengths(counts, max_length)
        escapes = int(counts[escape])
        escape_bits = int(top - escape).bit_length() if escapes else 0
        _, bits = huffman.code_words(lengths)
        size = int((counts * bits).sum()) + escapes * escape_bits + 8 * lengths.size
        if best is None or size < best[0]:
            best = (size, escape, escape_bits, lengths)
    return best[1], best[2], best[3]
