"""The synthetic lines benchmark of ACAI (Berthelot et al., ICLR 2019): 32×32 single-channel images
in [−1, 1] (background −1) of a line 2 px wide from the centre of the image 15 px outward, at an
angle drawn uniformly from [0, 2π), rasterized as ACAI's lib/data.py draws it; the label is the
angle's tenth of the circle."""

from __future__ import annotations

import math

import torch

SIZE = 32
CENTER = 16.0  # ACAI's pixel i spans [i, i + 1): the centre is the corner of the middle four pixels
LENGTH = 15.0
WIDTH = 2.0
NUM_CLASSES = 10
REFERENCE_COUNT = 10_000
TEST_SEED = 1_234_567


def draw_lines(angles: torch.Tensor) -> torch.Tensor:
    """Images (..., 1, 32, 32) float32 in [−1, 1] of lines at `angles` (radians, any shape, any device).

    The angle is measured counter-clockwise from the +x axis as the image is displayed (row 0 at
    the top). ACAI's rasterization (its draw_line, vectorized here): along the line's major axis
    (rows, or columns for a mostly horizontal line) each pixel row the segment enters is weighted by
    1 (the first row by the part of it the segment spans); across it, a 2 px span, which starts
    where the line is half a row before the row's start, covers each pixel by its overlap. A pixel
    is −1 + 2 × coverage.
    """
    if not isinstance(angles, torch.Tensor):
        raise TypeError(f"angles must be a torch.Tensor, got {type(angles).__name__}")
    if not angles.is_floating_point():
        raise TypeError(f"angles must be a float tensor, got {angles.dtype}")
    theta = angles.to(torch.float64).reshape(-1, 1)
    # Endpoints as (column, row): the row grows downwards, so the angle is negated.
    column_end = CENTER + LENGTH * torch.cos(-theta)
    row_end = CENTER + LENGTH * torch.sin(-theta)
    center = torch.full_like(theta, CENTER)
    flip = (row_end - CENTER).abs() < (column_end - CENTER).abs()  # mostly horizontal
    major_end = torch.where(flip, column_end, row_end)
    minor_end = torch.where(flip, row_end, column_end)
    # Along the major axis from the lower coordinate to the higher.
    backwards = major_end < CENTER
    major_low, major_high = torch.where(backwards, major_end, center), torch.where(backwards, center, major_end)
    minor_low = torch.where(backwards, minor_end, center) - WIDTH / 2
    minor_high = torch.where(backwards, center, minor_end) - WIDTH / 2
    slope = (minor_high - minor_low) / (major_high - major_low)
    pixels = torch.arange(SIZE, dtype=torch.float64, device=angles.device).reshape(1, SIZE)
    # Each row the segment enters, weighted 1 but for a first row entered part-way (by the part);
    # ACAI's last row counts in full however little of it the segment reaches.
    first = torch.ceil(major_low)
    spanned = (pixels >= torch.floor(major_low)) & (pixels < torch.ceil(major_high))
    row_weight = torch.where(pixels < first, first - major_low, 1.0) * spanned  # (N, major)
    span_start = (minor_low + (pixels - major_low - 0.5) * slope).unsqueeze(2)  # (N, major, 1)
    # The overlap of pixel [b, b + 1) with the span [start, start + 2].
    column = pixels.unsqueeze(0)
    across = (torch.minimum(column + 1, span_start + WIDTH) - torch.maximum(column, span_start)).clamp_min(0.0)
    coverage = row_weight.unsqueeze(2) * across  # (N, major, minor)
    coverage = torch.where(flip.unsqueeze(2), coverage.transpose(1, 2), coverage)  # → (N, row, column)
    images = (2.0 * coverage - 1.0).clamp(-1.0, 1.0).to(torch.float32)
    return images.reshape(*angles.shape, 1, SIZE, SIZE)


def angle_labels(angles: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """int64 class ⌊10·(θ − offset)/2π⌋ of angles (wrapped to [0, 2π) after the offset): ten bins
    of 36°, the first starting at `offset`."""
    wrapped = torch.remainder(angles.double() - offset, 2 * math.pi)
    return (wrapped * (NUM_CLASSES / (2 * math.pi))).long().clamp_(0, NUM_CLASSES - 1)


def random_angles(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator, dtype=torch.float64).mul_(2 * math.pi)


def reference_angles(count: int = REFERENCE_COUNT) -> torch.Tensor:
    """`count` evenly spaced angles in [0, 2π): the lines decoded images are matched against."""
    return torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)


def test_angles(count: int, seed: int = TEST_SEED) -> torch.Tensor:
    return random_angles(count, torch.Generator().manual_seed(seed))


def interpolation_pair_angles(pairs: int, seed: int = TEST_SEED + 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end angles of the fixed interpolation pairs.

    The end is the start turned by ±[π/4, 3π/4]: far enough apart that the smoothness metric's
    denominator |θ_N − θ_1| is never near 0, and short of π, where the two ways round tie.
    """
    generator = torch.Generator().manual_seed(seed)
    start = random_angles(pairs, generator)
    turn = (math.pi / 4) + torch.rand(pairs, generator=generator, dtype=torch.float64) * (math.pi / 2)
    sign = torch.randint(2, (pairs,), generator=generator).double().mul_(2).sub_(1)
    return start, torch.remainder(start + sign * turn, 2 * math.pi)
