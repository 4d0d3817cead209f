import math

import pytest
import torch

from latentops.data import draw_lines, lines
from latentops.models import build_model
from latentops.pipelines import decode_interpolations, interpolation_metrics


def _pairs(count=6):
    return lines.interpolation_pair_angles(count)


def test_a_perfect_rotation_scores_zero():
    start, end = _pairs()
    turn = torch.remainder(end - start + math.pi, 2 * math.pi) - math.pi
    frames = start[:, None] + turn[:, None] * torch.linspace(0, 1, 16, dtype=torch.float64)
    metrics = interpolation_metrics(draw_lines(frames))
    assert metrics["mean_distance"] < 1e-4
    assert abs(metrics["smoothness"]) < 0.02


def test_a_pixel_fade_is_far_from_lines_and_jumps():
    start, end = _pairs()
    a, b = draw_lines(start)[:, None], draw_lines(end)[:, None]
    weights = torch.linspace(0, 1, 16).reshape(1, 16, 1, 1, 1)
    metrics = interpolation_metrics(a * (1 - weights) + b * weights)
    assert metrics["mean_distance"] > 0.03
    assert metrics["smoothness"] > 0.5  # the matched angle flips in one step


def test_blank_frames_have_distance_one_and_count_as_not_smooth():
    metrics = interpolation_metrics(torch.full((2, 5, 1, 32, 32), -1.0))
    assert metrics["mean_distance"] == pytest.approx(1.0)
    assert metrics["smoothness"] == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(4, 16, 32, 32), (2, 16, 3, 32, 32), (2, 2, 1, 32, 32), (0, 16, 1, 32, 32)])
def test_bad_shapes_name_decoded(shape):
    with pytest.raises(ValueError, match="decoded"):
        interpolation_metrics(torch.zeros(shape))


def test_decode_interpolations_hits_both_endpoints():
    torch.manual_seed(0)
    model = build_model("baseline", (1, 32, 32), depth=2, latent=2).train()
    start, end = (draw_lines(a) for a in _pairs(3))
    decoded = decode_interpolations(model, start, end, frames=5)
    assert decoded.shape == (3, 5, 1, 32, 32)
    assert model.training  # restored
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(decoded[:, 0], model.decode(model.encode(start)))
        torch.testing.assert_close(decoded[:, -1], model.decode(model.encode(end)))
