import torch

from latentops.pipelines import clustering_accuracy, linear_probe_accuracy


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
