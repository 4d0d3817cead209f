"""Downstream use of frozen latents (ACAI §4): a single-layer classifier's test accuracy, and the
accuracy of k-means clusters matched to the classes by the Hungarian algorithm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentops.data import lines
from latentops.kmeans import kmeans


@torch.no_grad()
def encode_all(model, images: torch.Tensor, device, batch_size: int = 1024) -> torch.Tensor:
    """Flattened latents (N, D) float32 of `images` (model.probe_latent), in eval mode batch by
    batch, on device."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.probe_latent(images[i : i + batch_size].to(device)).flatten(1).float()
            for i in range(0, images.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def linear_probe_accuracy(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    *,
    iters: int = 200,
    weight_decay: float = 1e-4,
) -> float:
    """Test accuracy of a linear softmax classifier fit on standardized frozen latents by
    full-batch L-BFGS (deterministic: zero init, no sampling)."""
    mean, std = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    train_x, test_x = (train_z - mean) / std, (test_z - mean) / std
    train_y = train_y.to(train_z.device)
    with torch.enable_grad():
        layer = torch.nn.Linear(train_x.shape[1], num_classes, device=train_x.device)
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
        optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(layer(train_x), train_y) + weight_decay * layer.weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    with torch.no_grad():
        predictions = layer(test_x).argmax(1).cpu()
    return float((predictions == test_y.cpu()).double().mean())


CLASSIFIERS = {
    "online": "one dense layer trained with the autoencoder on stop-gradient latents (ACAI)",
    "lbfgs": "one dense layer fit by L-BFGS on standardized frozen latents after training",
}
CLUSTERINGS = {
    "acai": "k-means (random init) fit on training latents whitened by their SVD, scored on the test latents (ACAI)",
    "test": "k-means++ fit and scored on the unwhitened test latents",
}


def whiten(train_z: torch.Tensor, test_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ACAI's whitening (cluster.py): both sets centred by the training mean and rotated onto the
    training latents' right singular vectors, each axis divided by its singular value + 1e-5."""
    if not (torch.isfinite(train_z).all() and torch.isfinite(test_z).all()):
        raise ValueError("the latents to cluster are not all finite: the model diverged (try a lower --lr)")
    mean = train_z.double().mean(0)
    train_c, test_c = train_z.double() - mean, test_z.double() - mean
    _, s, vh = torch.linalg.svd(train_c, full_matrices=False)
    return (train_c @ vh.T / (s + 1e-5)).float(), (test_c @ vh.T / (s + 1e-5)).float()


def cluster_latents(
    test_z: torch.Tensor,
    num_classes: int,
    *,
    train_z: torch.Tensor | None = None,
    restarts: int = 100,
    seed: int = 0,
) -> torch.Tensor:
    """Cluster of each test latent (int64, on the CPU). Without train_z ("test"): latentops.kmeans
    (k-means++, best of `restarts`) on the test latents themselves. With train_z ("acai"): both
    whitened by the training latents (whiten), k-means from `restarts` random seedings of up to
    1000 iterations fit on the training latents, each test latent given its nearest centroid."""
    if train_z is None:
        return kmeans(test_z.float(), num_classes, n_init=restarts, seed=seed).labels.cpu()
    train_w, test_w = whiten(train_z, test_z)
    result = kmeans(train_w, num_classes, n_init=restarts, init="random", iters=1000, seed=seed)
    return torch.cdist(test_w, result.centroids.to(test_w)).argmin(1).cpu()


def matched_accuracy(clusters: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Accuracy of `clusters` after matching them to the classes one to one (scipy's
    linear_sum_assignment on the counts: the Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    labels = labels.cpu().long()
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    counts.index_put_((clusters.cpu().long(), labels), torch.ones_like(labels), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    return float(counts[rows, cols].sum()) / max(labels.numel(), 1)


BIN_OFFSETS = 36


def circular_matched_accuracy(
    clusters: torch.Tensor, angles: torch.Tensor, num_classes: int, offsets: int = BIN_OFFSETS
) -> float:
    """matched_accuracy against classes that are `num_classes` equal bins of the angle, with the
    bins started at the best of `offsets` evenly spaced offsets within one bin. Where the first
    bin starts is arbitrary for classes on a circle (lines), and the accuracy of clusters that
    follow the circle perfectly depends on it."""
    width = 2 * math.pi / num_classes
    return max(
        matched_accuracy(clusters, lines.angle_labels(angles, i * width / offsets), num_classes) for i in range(offsets)
    )


def clustering_accuracy(
    z: torch.Tensor, labels: torch.Tensor, num_classes: int, *, restarts: int = 100, seed: int = 0
) -> float:
    """matched_accuracy of latentops.kmeans clusters (k = num_classes, best inertia of `restarts`
    runs) of z itself."""
    return matched_accuracy(cluster_latents(z, num_classes, restarts=restarts, seed=seed), labels, num_classes)
