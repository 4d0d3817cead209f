"""What the formats read from a SharedWeights (duck-typed: codes, codebook, mask), as numpy arrays,
with the checks every encoder needs."""

from __future__ import annotations

import numpy as np
import torch


def shared_arrays(shared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes int64 2-D, codebook float32 (k,), mask bool 2-D) of `shared`; the matrix it stands
    for is W = where(mask, codebook[codes], +0.0)."""
    for name in ("codes", "codebook", "mask"):
        if not isinstance(getattr(shared, name, None), torch.Tensor):
            raise TypeError(f"shared must have a tensor attribute {name!r} (a SharedWeights), got {type(shared)}")
    codes = shared.codes.detach().cpu()
    mask = shared.mask.detach().cpu()
    codebook = shared.codebook.detach().cpu().reshape(-1).to(torch.float32).contiguous().numpy()
    if codes.dim() != 2 or mask.shape != codes.shape:
        raise ValueError(
            f"shared.codes and shared.mask must be 2-D of one shape, got {tuple(codes.shape)} and {tuple(mask.shape)}"
        )
    if codes.is_floating_point() or codes.is_complex():
        raise TypeError(f"shared.codes must be integers, got {codes.dtype}")
    if codebook.size == 0 or not np.isfinite(codebook).all():
        raise ValueError("shared.codebook must hold k ≥ 1 finite values")
    codes = codes.to(torch.int64).numpy()
    mask = mask.to(torch.bool).numpy()
    kept = codes[mask]
    if kept.size and not (kept.min() >= 0 and kept.max() < codebook.size):
        raise ValueError(
            f"codes of kept entries must lie in [0, k = {codebook.size}), got [{kept.min()}, {kept.max()}]"
        )
    return codes, codebook, mask


def row_gaps(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The gap of each kept entry (rows, cols: its coordinates in row-major order): the columns
    skipped since the previous kept entry of its row, or since the row's start."""
    previous = np.r_[-1, cols[:-1]]
    previous[np.r_[True, rows[1:] != rows[:-1]] if rows.size else []] = -1
    return cols - previous - 1


def alphabet(value_bits: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct values among the used ones, compared by bit pattern (so −0.0 and 0.0 stay
    apart, and equal codebook entries merge): (alphabet bits sorted, symbol of each input value
    (−1 if unused), count of each alphabet symbol)."""
    used = np.flatnonzero(counts)
    values, inverse = np.unique(value_bits[used], return_inverse=True)
    symbol = np.full(value_bits.size, -1, dtype=np.int64)
    symbol[used] = inverse
    return values, symbol, np.bincount(inverse, weights=counts[used], minlength=values.size).astype(np.int64)
