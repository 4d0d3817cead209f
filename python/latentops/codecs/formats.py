"""The registry of compressed-matrix formats, and encode(shared, format)."""

from __future__ import annotations

from latentops.codecs.csc import CscMatrix
from latentops.codecs.ham import HamMatrix
from latentops.codecs.hcsr import HcsrMatrix
from latentops.codecs.matrix import CompressedMatrix
from latentops.codecs.sham import ShamMatrix

FORMATS: dict[str, type[CompressedMatrix]] = {
    "ham": HamMatrix,
    "sham": ShamMatrix,
    "csc": CscMatrix,
    "hcsr": HcsrMatrix,
}


def encode(shared, format: str = "hcsr") -> CompressedMatrix:
    """The 2-D SharedWeights `shared` (codes, codebook, mask) as a CompressedMatrix of `format`, one
    of FORMATS; "smallest" encodes it in every format and returns the smallest by nbytes."""
    if not isinstance(format, str):
        raise TypeError(f"format must be a str, got {type(format).__name__}")
    if format != "smallest" and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; valid: {', '.join([*FORMATS, 'smallest'])}")
    codes = getattr(shared, "codes", None)
    if not hasattr(codes, "dim"):
        raise TypeError(f"shared must be a SharedWeights (codes, codebook, mask), got {type(shared).__name__}")
    if codes.dim() != 2:
        raise ValueError(f"shared must be 2-D (a weight matrix), got codes of shape {tuple(codes.shape)}")
    if format != "smallest":
        return FORMATS[format].encode(shared)
    return min((cls.encode(shared) for cls in FORMATS.values()), key=lambda m: m.nbytes)
