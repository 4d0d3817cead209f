"""ACAI's interpolation benchmark on lines: decode evenly spaced interpolations between the latents
of two lines and ask how line-like the images are (Mean Distance) and how evenly the angle moves
(Smoothness)."""

from __future__ import annotations

import math

import torch

from latentops.data import lines
from latentops.ops import nearest_centroid

FRAMES = 16
_references: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _reference_lines(device: torch.device, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized reference line images (count, 1024) on `device` and their angles (cached)."""
    key = (str(device), count)
    if key not in _references:
        angles = lines.reference_angles(count)
        images = _unit_rows(lines.draw_lines(angles).to(device).flatten(1))
        _references[key] = images, angles.to(device)
    return _references[key]


def _unit_rows(images: torch.Tensor) -> torch.Tensor:
    # Shifted to [0, 1] first: with a background of 0 the cosine compares strokes, not the
    # background that fills 95% of the pixels in [−1, 1].
    shifted = (images.float() + 1.0) * 0.5
    return shifted / shifted.norm(dim=1, keepdim=True).clamp_min(1e-12)


def interpolation_metrics(decoded: torch.Tensor, references: int = lines.REFERENCE_COUNT) -> dict:
    """{"mean_distance", "smoothness"} (floats) of decoded interpolations between pairs of lines.

    decoded: (pairs, N, 1, 32, 32), N ≥ 3 frames per pair from the first endpoint to the second,
    in the images' [−1, 1] range. Each frame is matched to the nearest of `references` evenly
    spaced line images by cosine distance (one latentops.nearest_centroid call on unit vectors,
    where ‖u − r‖² = 2 − 2 cos). Mean Distance: the mean matched cosine distance. Smoothness, per
    pair, on the unwrapped matched angles θ_1..θ_N: max_n |θ_{n+1} − θ_n| / |θ_N − θ_1| − 1/(N − 1),
    0 for a uniform rotation; a pair whose endpoints match the same line (so no rotation to be
    smooth about) counts as 1. The result is the mean over pairs.
    """
    if not isinstance(decoded, torch.Tensor) or not decoded.is_floating_point():
        raise TypeError(f"decoded must be a float tensor, got {getattr(decoded, 'dtype', type(decoded).__name__)}")
    if decoded.dim() != 5 or decoded.shape[2:] != (1, lines.SIZE, lines.SIZE) or decoded.shape[1] < 3:
        raise ValueError(f"decoded must have shape (pairs, N ≥ 3, 1, 32, 32), got {tuple(decoded.shape)}")
    pairs, frames = decoded.shape[:2]
    if pairs == 0:
        raise ValueError("decoded must hold at least one pair, got shape (0, ...)")
    with torch.no_grad():
        ref_images, ref_angles = _reference_lines(decoded.device, references)
        shifted = (decoded.detach().float().flatten(2) + 1.0) * 0.5
        norm = shifted.norm(dim=2, keepdim=True)
        units = (shifted / norm.clamp_min(1e-12)).reshape(pairs * frames, -1)
        indices, sq_dist = nearest_centroid(units, ref_images)
        # cos = (‖u‖² + 1 − ‖u − r‖²) / 2, which stays right for a blank frame (u = 0: cos 0).
        unit_sq = units.square().sum(1)
        distance = 1.0 - (unit_sq + 1.0 - sq_dist) * 0.5
        angles = ref_angles[indices].reshape(pairs, frames)
        steps = torch.remainder(angles.diff(dim=1) + math.pi, 2 * math.pi) - math.pi  # unwrap
        span = steps.sum(1).abs()
        ratio = steps.abs().amax(1) / span.clamp_min(1e-12) - 1.0 / (frames - 1)
        smoothness = torch.where(span > math.pi / references, ratio, torch.ones_like(ratio))
        mean_distance, mean_smoothness = torch.stack([distance.mean(), smoothness.mean()]).tolist()
    return {"mean_distance": mean_distance, "smoothness": mean_smoothness}


@torch.no_grad()
def decode_interpolations(model, start: torch.Tensor, end: torch.Tensor, frames: int = FRAMES) -> torch.Tensor:
    """(pairs, frames, C, H, W): model.decode of the latents lerped from encode(start) (first
    frame) to encode(end) (last), evenly spaced; the model is evaluated in eval mode."""
    was_training = model.training
    model.eval()
    try:
        z_start, z_end = model.encode(start), model.encode(end)
        weights = torch.linspace(0.0, 1.0, frames, device=z_start.device, dtype=z_start.dtype)
        weights = weights.reshape(1, frames, *([1] * (z_start.dim() - 1)))
        mixed = z_start.unsqueeze(1) + weights * (z_end - z_start).unsqueeze(1)
        decoded = model.decode(mixed.flatten(0, 1))
        return decoded.reshape(start.shape[0], frames, *decoded.shape[1:])
    finally:
        model.train(was_training)
