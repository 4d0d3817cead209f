import math

import pytest
import torch

from latentops.data import LinesDataset, draw_lines, lines


def test_images_are_lines_from_the_centre():
    images = draw_lines(torch.tensor([0.0, math.pi / 2, math.pi, 3 * math.pi / 2]))
    assert images.shape == (4, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() == -1.0 and images.max() == 1.0
    assert (images == -1.0).float().mean() > 0.9  # mostly background
    lit = images[:, 0] > 0
    # Angle 0 points right, π/2 up (row 0 is the top), π left, 3π/2 down, each ~15 px long.
    assert lit[0, 16, 20:31].all() and not lit[0, 16, :14].any()
    assert lit[1, 2:13, 16].all() and not lit[1, 19:, 16].any()
    assert lit[2, 16, 2:13].all() and not lit[2, 16, 19:].any()
    assert lit[3, 20:31, 16].all() and not lit[3, :14, 16].any()
    widths = (images[0, 0, :, 24] > -1).sum()
    assert 2 <= widths <= 4  # about 2 px, anti-aliased edges included


def test_acai_rasterization_by_hand():
    """ACAI's draw_line worked by hand: pixel i spans [i, i + 1), the line starts at (16, 16)."""
    angles = torch.tensor([0.0, math.pi / 2, math.atan2(3.0, 4.0)], dtype=torch.float64)
    flat, upright, slanted = draw_lines(angles)[:, 0]
    # Angle 0: rows 15 and 16 (2 px), columns 16..30 (15 px), fully lit; nothing else.
    expected = torch.full((32, 32), -1.0)
    expected[15:17, 16:31] = 1.0
    torch.testing.assert_close(flat, expected)
    expected = torch.full((32, 32), -1.0)
    expected[1:16, 15:17] = 1.0
    torch.testing.assert_close(upright, expected, atol=1e-6, rtol=0)
    # cos θ = 0.8, sin θ = 0.6: mostly horizontal, so columns 16..27 are its rows; in column c the
    # 2 px span starts at row 15 − 0.75·(c − 16.5): 15.375 in column 16, 7.125 in column 27.
    torch.testing.assert_close(slanted[14:19, 16], torch.tensor([-1.0, 0.25, 1.0, -0.25, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(slanted[6:11, 27], torch.tensor([-1.0, 0.75, 1.0, -0.75, -1.0]), atol=1e-6, rtol=0)
    assert (slanted[:, :16] == -1).all()


def test_vectorized_over_any_shape_and_device():
    angles = torch.rand(2, 3, dtype=torch.float64) * 2 * math.pi
    batch = draw_lines(angles)
    assert batch.shape == (2, 3, 1, 32, 32)
    one_by_one = torch.stack([draw_lines(a.reshape(1))[0] for a in angles.reshape(-1)])
    torch.testing.assert_close(batch.reshape(6, 1, 32, 32), one_by_one)
    assert draw_lines(torch.zeros(0)).shape == (0, 1, 32, 32)


def test_bad_angles_are_named():
    with pytest.raises(TypeError, match="angles"):
        draw_lines([0.0])
    with pytest.raises(TypeError, match="angles"):
        draw_lines(torch.zeros(3, dtype=torch.int64))


def test_labels_are_tenths_of_the_circle():
    angles = torch.tensor([0.0, 0.62, 0.63, math.pi, 2 * math.pi - 1e-9, 2 * math.pi, -0.1], dtype=torch.float64)
    assert lines.angle_labels(angles).tolist() == [0, 0, 1, 5, 9, 0, 9]


def test_training_stream_is_unlimited_deterministic_and_split_across_ranks():
    data = LinesDataset(test_count=16)
    a, labels = data.train_batch(5, 8, seed=3)
    b, _ = data.train_batch(5, 8, seed=3)
    assert torch.equal(a, b) and labels.shape == (8,)
    assert not torch.equal(a, data.train_batch(6, 8, seed=3)[0])
    assert not torch.equal(a, data.train_batch(5, 8, seed=4)[0])
    assert data.train_batch(10**9, 4, seed=0)[0].shape == (4, 1, 32, 32)  # no end
    halves = [data.train_batch(5, 8, seed=3, rank=r, world=2)[0] for r in (0, 1)]
    torch.testing.assert_close(torch.stack(halves, 1).reshape(8, 1, 32, 32), a)
    with pytest.raises(ValueError, match="batch_size"):
        data.train_batch(0, 7, seed=0, rank=0, world=2)


def test_test_set_and_pairs_are_fixed():
    x1, y1 = LinesDataset(test_count=32).test_set()
    x2, y2 = LinesDataset(test_count=32).test_set()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    start, end = lines.interpolation_pair_angles(50)
    turn = (torch.remainder(end - start + math.pi, 2 * math.pi) - math.pi).abs()
    assert (turn >= math.pi / 4 - 1e-9).all() and (turn <= 3 * math.pi / 4 + 1e-9).all()
