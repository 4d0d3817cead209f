"""Reference nearest-centroid search: the spec every backend is tested against.

Distances are computed directly, Σ_t (z_t − c_t)² in float64 (torch.cdist without the matmul
shortcut), never through the expanded form ‖z‖² − 2 z·c + ‖c‖², whose cancellation away from the
origin dwarfs the gaps between distances and needs a tie allowance that fails there. For float32,
float16 and bfloat16 inputs every difference and square is exact in float64 and cannot overflow or
underflow, so the chosen index is the true nearest centroid up to the float64 rounding of the sum.
Rows are processed in chunks so memory stays O(chunk · K), never O(N · K).

Non-finite values follow IEEE arithmetic on the direct distance (the CPU kernel's rule): a NaN
distance never wins over a number (+inf included); ties go to the lowest index; a row whose
distances are all NaN gets index 0. For float64 inputs the float64 distance is the definition: past
~1e154 per entry it overflows to +inf, and such distances tie (lowest index).
"""

import torch

_CHUNK_ELEMENTS = 1 << 22  # distances held at once: 32 MiB of float64


def squared_distance(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Σ_t (z_t − c_t)² row by row, in float32 (float64 for float64 inputs), without cancellation."""
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    return (z.to(acc) - centroids.to(acc)).square().sum(-1)


def nearest_index(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row of every row of z by the direct float64 distance."""
    n, k = z.shape[0], codebook.shape[0]
    c64 = codebook.to(torch.float64)
    indices = torch.empty(n, dtype=torch.int64, device=z.device)
    rows = max(1, _CHUNK_ELEMENTS // max(k, 1))
    for start in range(0, n, rows):
        z64 = z[start : start + rows].to(torch.float64)
        # ‖z − c‖ (a square root is monotone: the argmin is that of the squared distance).
        dist = torch.cdist(z64, c64, compute_mode="donot_use_mm_for_euclid_dist")
        nan = dist.isnan()
        best = dist.masked_fill(nan, torch.inf).amin(1, keepdim=True)
        # First index attaining the minimum among numbers; all-NaN rows have no hit: argmax gives 0.
        hit = (dist == best) & ~nan
        indices[start : start + rows] = hit.to(torch.uint8).argmax(1)
    return indices


def nearest_centroid(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, D), codebook (K, D) -> (indices int64 (N,), squared distances (N,))."""
    indices = nearest_index(z, codebook)
    return indices, squared_distance(z, codebook[indices])


def nearest_centroid_forward(
    z: torch.Tensor, codebook: torch.Tensor, accuracy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch backend's stage (always exact: `accuracy` has nothing to trade here)."""
    return nearest_centroid(z, codebook)
