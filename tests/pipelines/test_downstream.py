import math

import pytest
import torch

from latentops.data import lines
from latentops.pipelines import clustering_accuracy, linear_probe_accuracy
from latentops.pipelines.autoencoders.downstream import (
    circular_matched_accuracy,
    cluster_latents,
    matched_accuracy,
    whiten,
)


def _blobs(gen, per_class=40, classes=4, dim=5, spread=0.1):
    # centres 5·√2 apart (random centres could land close enough to make the classes overlap)
    centres = torch.eye(classes, dim) * 5
    labels = torch.arange(classes).repeat_interleave(per_class)
    points = centres[labels] + spread * torch.randn(len(labels), dim, generator=gen)
    return points, labels


def test_clustering_accuracy_matches_clusters_to_classes(gen):
    points, labels = _blobs(gen)
    # Cluster ids are arbitrary: the Hungarian matching must find the permutation.
    assert clustering_accuracy(points, labels, 4, restarts=5) == 1.0
    shuffled = labels[torch.randperm(len(labels), generator=gen)]
    assert clustering_accuracy(points, shuffled, 4, restarts=2) < 0.6


def test_linear_probe_separates_separable_classes(gen):
    points, labels = _blobs(gen, spread=0.5)
    test_points, test_labels = points[::2], labels[::2]
    assert linear_probe_accuracy(points[1::2], labels[1::2], test_points, test_labels, 4) == 1.0


def test_matched_accuracy_by_hand():
    clusters = torch.tensor([2, 2, 0, 0, 1, 1])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    # Best one-to-one matching: 2→0 (2 right), 0→1 (2), 1→2 (1): 5 of 6.
    assert matched_accuracy(clusters, labels, 3) == 5 / 6


def test_whitening_is_acais(gen):
    train = torch.randn(200, 3, generator=gen, dtype=torch.float64) @ torch.tensor(
        [[3.0, 0, 0], [1.0, 0.5, 0], [0, 0, 0.1]], dtype=torch.float64
    )
    test = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    train_w, test_w = whiten(train, test)
    mean = train.mean(0)
    _, s, vh = torch.linalg.svd(train - mean, full_matrices=False)
    torch.testing.assert_close(test_w, ((test - mean) @ vh.T / (s + 1e-5)).float())
    # The whitened training latents are orthonormal columns: every direction weighs the same.
    torch.testing.assert_close(
        train_w.T.double() @ train_w.double(), torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_acai_clustering_fits_on_training_latents(gen):
    train, train_labels = _blobs(gen)
    test, test_labels = _blobs(gen, per_class=10)
    clusters = cluster_latents(test, 4, train_z=train, restarts=5)
    assert matched_accuracy(clusters, test_labels, 4) == 1.0
    # The same fit (same seed) labels the training latents: each test latent gets the cluster id
    # of the training blob it was drawn beside, not a fit of its own.
    train_clusters = cluster_latents(train, 4, train_z=train, restarts=5)
    for c in range(4):
        assert set(clusters[test_labels == c].tolist()) == set(train_clusters[train_labels == c].tolist())


def test_circular_accuracy_takes_the_best_bin_offset():
    # Clusters that cut the circle into ten arcs starting at 17°: against bins starting at 0° a
    # perfect circular embedding scores about 53%; against the best offset (18°, 1° steps), 97% or more.
    angles = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 * math.pi
    clusters = lines.angle_labels(angles, math.radians(17))
    assert matched_accuracy(clusters, lines.angle_labels(angles), 10) < 0.6
    assert circular_matched_accuracy(clusters, angles, 10) > 0.97
    assert circular_matched_accuracy(lines.angle_labels(angles), angles, 10) == 1.0


def test_diverged_latents_are_named_not_a_linalg_error():
    from latentops.pipelines.autoencoders.downstream import whiten

    train = torch.randn(20, 4)
    train[3, 1] = float("nan")
    with pytest.raises(ValueError, match="diverged"):
        whiten(train, torch.randn(5, 4))
