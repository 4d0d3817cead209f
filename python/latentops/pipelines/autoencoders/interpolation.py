"""ACAI's interpolation benchmark on lines: decode evenly spaced interpolations between the latents
of two lines and ask how line-like the images are (Mean Distance) and how evenly the angle moves
(Smoothness)."""

from __future__ import annotations

import math

import torch

from latentops.data import lines
from latentops.ops import nearest_centroid

FRAMES = 16
# Which definition of each metric: ACAI's (lib/eval.py of brain-research/acai) by default, ours by name.
DISTANCES = {
    "acai": "cosine distance of the raw [−1, 1] images (ACAI)",
    "strokes": "cosine distance after shifting images to [0, 1], so that the strokes, not the background, count",
}
DEGENERATE = {
    "acai": "a pair whose endpoints match the same line scores 0 (ACAI: NaN, averaged as 0)",
    "worst": "a pair whose endpoints match the same line scores 1 (no rotation is no smooth rotation)",
}
PAIRS = {
    "random": "pairs of random test lines (ACAI)",
    "turns": "each random line and it turned by ±[π/4, 3π/4]: every pair rotates",
}
DEGENERATE_SPAN = 1e-4  # ACAI's threshold on |θ_N − θ_1| (radians); below it a pair is degenerate
_references: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _reference_lines(device: torch.device, count: int, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit reference line images (count, 1024) for `distance` on `device`, and their angles (cached)."""
    key = (str(device), count, distance)
    if key not in _references:
        angles = lines.reference_angles(count)
        images = _unit_rows(lines.draw_lines(angles).to(device).flatten(1), distance)
        _references[key] = images, angles.to(device)
    return _references[key]


def _unit_rows(images: torch.Tensor, distance: str) -> torch.Tensor:
    """Rows scaled to unit norm (an all-zero row stays zero), after the shift of `distance`."""
    images = images.float()
    if distance == "strokes":
        images = (images + 1.0) * 0.5
    return images / images.norm(dim=1, keepdim=True).clamp_min(1e-12)


def interpolation_metrics(
    decoded: torch.Tensor,
    references: int = lines.REFERENCE_COUNT,
    *,
    distance: str = "acai",
    degenerate: str = "acai",
) -> dict:
    """{"mean_distance", "smoothness" (floats), "degenerate_pairs" (int)} of decoded interpolations
    between pairs of lines, as ACAI defines them by default.

    decoded: (pairs, N, 1, 32, 32), N ≥ 3 frames per pair from the first endpoint to the second,
    in the images' [−1, 1] range. Each frame is matched to the nearest of `references` evenly
    spaced line images by cosine distance (one latentops.nearest_centroid call on unit vectors,
    where ‖u − r‖² = 2 − 2 cos): of the raw images (distance="acai") or of images shifted to
    [0, 1] ("strokes"). Mean Distance: the mean matched cosine distance over every frame,
    endpoints included. Smoothness, per pair, on the unwrapped matched angles θ_1..θ_N:
    max_n |θ_{n+1} − θ_n| / |θ_N − θ_1| − 1/(N − 1), 0 for a uniform rotation; a degenerate pair
    (|θ_N − θ_1| < 1e-4: both endpoints match the same line) scores 0 and still counts in the mean
    (degenerate="acai", as ACAI's NaN-as-0 average) or scores 1 ("worst"). The result is the mean
    over pairs, and how many pairs were degenerate.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {tuple(DISTANCES)}, got {distance!r}")
    if degenerate not in DEGENERATE:
        raise ValueError(f"degenerate must be one of {tuple(DEGENERATE)}, got {degenerate!r}")
    if not isinstance(decoded, torch.Tensor) or not decoded.is_floating_point():
        raise TypeError(f"decoded must be a float tensor, got {getattr(decoded, 'dtype', type(decoded).__name__)}")
    if decoded.dim() != 5 or decoded.shape[2:] != (1, lines.SIZE, lines.SIZE) or decoded.shape[1] < 3:
        raise ValueError(f"decoded must have shape (pairs, N ≥ 3, 1, 32, 32), got {tuple(decoded.shape)}")
    pairs, frames = decoded.shape[:2]
    if pairs == 0:
        raise ValueError("decoded must hold at least one pair, got shape (0, ...)")
    with torch.no_grad():
        ref_images, ref_angles = _reference_lines(decoded.device, references, distance)
        units = _unit_rows(decoded.detach().flatten(0, 1).flatten(1), distance)
        indices, sq_dist = nearest_centroid(units, ref_images)
        # cos = (‖u‖² + 1 − ‖u − r‖²) / 2, which stays right for a blank frame (u = 0: cos 0).
        distance_to_line = 1.0 - (units.square().sum(1) + 1.0 - sq_dist) * 0.5
        angles = ref_angles[indices].reshape(pairs, frames)
        steps = torch.remainder(angles.diff(dim=1) + math.pi, 2 * math.pi) - math.pi  # np.unwrap's steps
        span = steps.sum(1).abs()
        ratio = steps.abs().amax(1) / span.clamp_min(1e-12) - 1.0 / (frames - 1)
        degenerate_pairs = span < DEGENERATE_SPAN
        smoothness = torch.where(degenerate_pairs, 0.0 if degenerate == "acai" else 1.0, ratio)
        mean_distance, mean_smoothness = torch.stack([distance_to_line.mean(), smoothness.mean()]).tolist()
    return {
        "mean_distance": mean_distance,
        "smoothness": mean_smoothness,
        "degenerate_pairs": int(degenerate_pairs.sum()),
    }


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
