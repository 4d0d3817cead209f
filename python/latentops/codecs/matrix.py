"""CompressedMatrix: what every format of latentops.codecs gives back, and what a file holds.

A format is a subclass that stores a (rows, cols) matrix as named `parts` (CPU tensors: every byte
the format needs, codebook and code tables included) and a few integers in `meta`; it implements
`encode` (from SharedWeights), `decode` (the float32 matrix, bit-exact equal to the encoded
SharedWeights' dense()) and `validate` (refuse parts that are not what the format says, by name,
without decoding anything out of bounds). save_file/load_file need nothing else of a format.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from latentops.codecs.errors import CorruptedFileError

# The widths of counts and indices (smallest_unsigned): int64 stands for 8 bytes (torch has no
# arithmetic on uint64), so it is checked to be non-negative.
UNSIGNED_DTYPES = (torch.uint8, torch.uint16, torch.uint32, torch.int64)


class CompressedMatrix:
    format: ClassVar[str]
    # name -> allowed dtypes of each part, the schema validate() starts from
    part_dtypes: ClassVar[dict[str, tuple[torch.dtype, ...]]]
    meta_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, shape: tuple[int, int], parts: dict[str, torch.Tensor], meta: dict[str, int] | None = None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.parts = dict(parts)
        self.meta = dict(meta or {})

    @classmethod
    def encode(cls, shared) -> CompressedMatrix:
        """The matrix of a 2-D SharedWeights (codes, codebook, mask) in this format."""
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        """The (rows, cols) float32 matrix, on the CPU."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise CorruptedFileError unless the parts and meta are a well-formed matrix of this
        format. The base checks the schema; formats add their own structure."""
        where = f"{self.format} matrix"
        rows, cols = self.shape
        if rows < 0 or cols < 0:
            raise CorruptedFileError(f"{where}: negative shape {self.shape}")
        if set(self.parts) != set(self.part_dtypes):
            raise CorruptedFileError(f"{where}: parts {sorted(self.parts)}, expected {sorted(self.part_dtypes)}")
        for name, t in self.parts.items():
            if not isinstance(t, torch.Tensor) or t.dtype not in self.part_dtypes[name] or t.dim() != 1:
                got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                allowed = ", ".join(str(d).removeprefix("torch.") for d in self.part_dtypes[name])
                raise CorruptedFileError(f"{where}: part {name!r} must be a 1-D tensor of {allowed}, got {got}")
            if t.dtype == torch.int64 and self.part_dtypes[name] == UNSIGNED_DTYPES and t.numel() and int(t.min()) < 0:
                raise CorruptedFileError(f"{where}: part {name!r} holds a negative count or index ({int(t.min())})")
        if set(self.meta) != set(self.meta_keys) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in self.meta.values()
        ):
            raise CorruptedFileError(f"{where}: meta {self.meta}, expected integers {list(self.meta_keys)}")

    @classmethod
    def from_parts(cls, shape, parts: dict[str, torch.Tensor], meta: dict[str, int]) -> CompressedMatrix:
        """A matrix read back from storage: validated before it is returned."""
        matrix = cls(shape, parts, meta)
        matrix.validate()
        return matrix

    @property
    def nbytes(self) -> int:
        """Every byte the format needs: its parts, plus 4 per integer of meta and shape."""
        return sum(t.numel() * t.element_size() for t in self.parts.values()) + 4 * (len(self.meta) + 2)

    @property
    def psi(self) -> float:
        """nbytes / the bytes of the dense float32 matrix (sHAM's ψ, measured)."""
        rows, cols = self.shape
        return self.nbytes / max(1, 4 * rows * cols)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, nbytes={self.nbytes}, psi={self.psi:.4g})"


def smallest_unsigned(values) -> torch.Tensor:
    """Non-negative integers (a numpy array or tensor) stored at the smallest of 1, 2, 4 or 8 bytes."""
    values = torch.as_tensor(values).reshape(-1).to(torch.int64)
    top = int(values.max()) if values.numel() else 0
    dtype = next(d for d, limit in zip(UNSIGNED_DTYPES, (1 << 8, 1 << 16, 1 << 32, 1 << 63)) if top < limit)
    # torch builds uint16/uint32 tensors from numpy only
    return torch.from_numpy(values.numpy().astype(str(dtype).removeprefix("torch.")))
