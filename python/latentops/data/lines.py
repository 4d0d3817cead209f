"""The synthetic lines benchmark of ACAI (Berthelot et al., ICLR 2019): 32×32 single-channel images
in [−1, 1] (background −1) of an anti-aliased line about 2 px wide, 15 px long, from the centre
(16, 16) at an angle drawn uniformly from [0, 2π); the label is the angle's tenth of the circle."""

from __future__ import annotations

import math

import torch

SIZE = 32
CENTER = 16.0
LENGTH = 15.0
HALF_WIDTH = 1.0  # a line about 2 px wide
NUM_CLASSES = 10
REFERENCE_COUNT = 10_000
TEST_SEED = 1_234_567


def draw_lines(angles: torch.Tensor) -> torch.Tensor:
    """Images (..., 1, 32, 32) float32 in [−1, 1] of lines at `angles` (radians, any shape, any device).

    The angle is measured counter-clockwise from the +x axis as the image is displayed (row 0 at
    the top). Each pixel's intensity is its coverage by a 2 px wide stroke, approximated by
    clamp(1 + 0.5 − distance to the segment, 0, 1): a 1 px linear ramp at the edges.
    """
    if not isinstance(angles, torch.Tensor):
        raise TypeError(f"angles must be a torch.Tensor, got {type(angles).__name__}")
    if not angles.is_floating_point():
        raise TypeError(f"angles must be a float tensor, got {angles.dtype}")
    theta = angles.to(torch.float32).reshape(-1, 1, 1)
    coords = torch.arange(SIZE, dtype=torch.float32, device=angles.device)
    px = (coords - CENTER).reshape(1, 1, SIZE)  # columns
    py = (CENTER - coords).reshape(1, SIZE, 1)  # rows, with y up
    dx, dy = torch.cos(theta), torch.sin(theta)
    # Distance from each pixel centre to the segment centre → centre + LENGTH·(dx, dy).
    t = (px * dx + py * dy).clamp(0.0, LENGTH)
    dist = torch.sqrt((px - t * dx).square() + (py - t * dy).square())
    coverage = (HALF_WIDTH + 0.5 - dist).clamp(0.0, 1.0)
    return (2.0 * coverage - 1.0).reshape(*angles.shape, 1, SIZE, SIZE)


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
