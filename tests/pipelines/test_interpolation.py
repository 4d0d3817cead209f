import math

import pytest
import torch

from latentops.data import draw_lines, lines
from latentops.models import build_model
from latentops.pipelines import decode_interpolations, interpolation_metrics


def _pairs(count=6):
    return lines.interpolation_pair_angles(count)


@pytest.mark.parametrize("distance", ["acai", "strokes"])
def test_a_perfect_rotation_scores_zero(distance):
    start, end = _pairs()
    turn = torch.remainder(end - start + math.pi, 2 * math.pi) - math.pi
    frames = start[:, None] + turn[:, None] * torch.linspace(0, 1, 16, dtype=torch.float64)
    metrics = interpolation_metrics(draw_lines(frames), distance=distance)
    assert metrics["mean_distance"] < 1e-4
    assert abs(metrics["smoothness"]) < 0.02
    assert metrics["degenerate_pairs"] == 0


def test_a_pixel_fade_is_far_from_lines_and_jumps():
    start, end = _pairs()
    a, b = draw_lines(start)[:, None], draw_lines(end)[:, None]
    weights = torch.linspace(0, 1, 16).reshape(1, 16, 1, 1, 1)
    fade = a * (1 - weights) + b * weights
    assert interpolation_metrics(fade, distance="strokes")["mean_distance"] > 0.03
    metrics = interpolation_metrics(fade)
    assert metrics["mean_distance"] > 3e-3  # ACAI's scale: the background dominates the raw cosine
    assert metrics["smoothness"] > 0.5  # the matched angle flips in one step


def test_mean_distance_is_the_cosine_distance_to_the_nearest_reference():
    # Against a float64 brute force over 97 reference lines, for both definitions.
    gen = torch.Generator().manual_seed(0)
    decoded = torch.rand(3, 4, 1, 32, 32, generator=gen, dtype=torch.float64) * 2 - 1
    references = lines.draw_lines(lines.reference_angles(97)).flatten(1).double()
    for distance, shift in (("acai", lambda t: t), ("strokes", lambda t: (t + 1) / 2)):
        x, r = shift(decoded.flatten(0, 1).flatten(1)), shift(references)
        cos = (x @ r.T) / (x.norm(dim=1, keepdim=True) * r.norm(dim=1))
        expected = (1 - cos).amin(1).mean().item()
        got = interpolation_metrics(decoded, 97, distance=distance)["mean_distance"]
        assert got == pytest.approx(expected, abs=1e-5), distance


def test_smoothness_by_hand_with_a_degenerate_pair():
    # Frames drawn at reference angles match them exactly. Pair 0 steps a, 2a, a: max 2a over a
    # span of 4a, minus 1/3 → 1/6. Pair 1 goes out and back: both endpoints match one line.
    step = 2 * math.pi / 100
    angles = torch.tensor([[0.0, 1.0, 3.0, 4.0], [7.0, 9.0, 8.0, 7.0]], dtype=torch.float64) * step
    decoded = draw_lines(angles)
    acai = interpolation_metrics(decoded, 100)
    assert acai["smoothness"] == pytest.approx((1 / 6 + 0) / 2) and acai["degenerate_pairs"] == 1
    worst = interpolation_metrics(decoded, 100, degenerate="worst")
    assert worst["smoothness"] == pytest.approx((1 / 6 + 1) / 2) and worst["degenerate_pairs"] == 1


def test_smoothness_unwraps_across_zero():
    step = 2 * math.pi / 100
    angles = torch.tensor([[98.0, 99.0, 0.0, 1.0]], dtype=torch.float64) * step  # three equal steps
    assert interpolation_metrics(draw_lines(angles), 100)["smoothness"] == pytest.approx(0.0, abs=1e-9)


def test_blank_frames():
    # All background: close to every line under ACAI's raw cosine (1 − cos = 0.0307 from the nearest,
    # which ACAI's own draw_line gives too; a fully lit 2 × 15 px line: 1 − 964/1024 = 0.059), every
    # pair degenerate.
    background = interpolation_metrics(torch.full((2, 5, 1, 32, 32), -1.0))
    assert background["mean_distance"] == pytest.approx(0.0307, abs=3e-4)
    assert background["smoothness"] == 0.0 and background["degenerate_pairs"] == 2
    assert interpolation_metrics(torch.full((2, 5, 1, 32, 32), -1.0), degenerate="worst")["smoothness"] == 1.0
    # No ink under the strokes definition: cosine 0, distance 1.
    assert interpolation_metrics(torch.full((2, 5, 1, 32, 32), -1.0), distance="strokes")[
        "mean_distance"
    ] == pytest.approx(1.0)


@pytest.mark.parametrize(("keyword", "value"), [("distance", "l2"), ("degenerate", "nan")])
def test_unknown_definitions_are_named(keyword, value):
    with pytest.raises(ValueError, match=keyword):
        interpolation_metrics(torch.zeros(1, 3, 1, 32, 32), **{keyword: value})


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
