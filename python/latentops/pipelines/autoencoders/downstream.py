"""Downstream use of frozen latents (ACAI §4): a single-layer classifier's test accuracy, and the
accuracy of k-means clusters matched to the classes by the Hungarian algorithm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentops.kmeans import kmeans


@torch.no_grad()
def encode_all(model, images: torch.Tensor, device, batch_size: int = 1024) -> torch.Tensor:
    """Flattened latents (N, D) float32 of `images`, encoded in eval mode batch by batch, on device."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.encode(images[i : i + batch_size].to(device)).flatten(1).float()
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


def clustering_accuracy(
    z: torch.Tensor, labels: torch.Tensor, num_classes: int, *, restarts: int = 100, seed: int = 0
) -> float:
    """Accuracy of latentops.kmeans clusters (k = num_classes, best inertia of `restarts` runs)
    after matching clusters to classes one to one with scipy's linear_sum_assignment."""
    from scipy.optimize import linear_sum_assignment

    result = kmeans(z.float(), num_classes, n_init=restarts, seed=seed)
    clusters = result.labels.cpu()
    labels = labels.cpu().long()
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    counts.index_put_((clusters, labels), torch.ones_like(labels), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    return float(counts[rows, cols].sum()) / max(labels.numel(), 1)
