"""The interface the training pipeline reads data through, and its two implementations: an
unlimited generated stream (lines) and arrays held in memory (digits, MNIST, SVHN, CIFAR-10).

Batches are a pure function of (seed, step): resuming at a step needs no sampler state, and under
data parallelism every rank takes its rows of the same global batch, so P processes see the data one
process would."""

from __future__ import annotations

import torch

from latentops.data import lines

# Rank r of `world` takes rows r, r + world, ... of the global batch.


def _rank_rows(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return batch[rank::world]


def _check_batch(batch_size: int, world: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int ≥ 1, got {batch_size!r}")
    if batch_size % world:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of the number of "
            f"processes ({world}): each takes an equal share of the global batch"
        )


class ImageDataset:
    """Images are float32 (N, C, H, W) in [−1, 1]; labels int64 (N,)."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int

    def train_batch(
        self, step: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of the global training batch number `step` (batch_size rows in all)."""
        raise NotImplementedError

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def probe_train_set(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to `count` labelled training images, fixed, for the downstream classifier."""
        raise NotImplementedError


class LinesDataset(ImageDataset):
    name = "lines"
    image_shape = (1, lines.SIZE, lines.SIZE)
    num_classes = lines.NUM_CLASSES

    def __init__(self, test_count: int = 10_000):
        self.test_count = test_count
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_batch(self, step, batch_size, seed, rank=0, world=1):
        _check_batch(batch_size, world)
        generator = torch.Generator().manual_seed(_step_seed(seed, step))
        angles = _rank_rows(lines.random_angles(batch_size, generator), rank, world)
        return lines.draw_lines(angles), lines.angle_labels(angles)

    def test_angles(self) -> torch.Tensor:
        """The angles of the test set's lines (float64), in its order."""
        return lines.test_angles(self.test_count)

    def test_set(self):
        if self._test is None:  # drawn once: evaluations reuse it
            angles = self.test_angles()
            self._test = lines.draw_lines(angles), lines.angle_labels(angles)
        return self._test

    def probe_train_set(self, count):
        # A seed no training step uses (training seeds are _step_seed(seed, step) ≥ 0 mixes).
        angles = lines.random_angles(count, torch.Generator().manual_seed(lines.TEST_SEED + 2))
        return lines.draw_lines(angles), lines.angle_labels(angles)


class ArrayDataset(ImageDataset):
    """A finite dataset in memory, sampled in epochs of seeded random permutations."""

    def __init__(
        self,
        name: str,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        num_classes: int = 10,
    ):
        for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            if images.dim() != 4 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
                raise ValueError(
                    f"{name} {split} images must be (N ≥ 1, C, H, W) with N labels, "
                    f"got {tuple(images.shape)} and {tuple(labels.shape)}"
                )
        self.name = name
        self.train_images, self.train_labels = train_images, train_labels.long()
        self.test_images, self.test_labels = test_images, test_labels.long()
        self.image_shape = tuple(train_images.shape[1:])
        self.num_classes = num_classes

    def train_batch(self, step, batch_size, seed, rank=0, world=1):
        _check_batch(batch_size, world)
        n = self.train_images.shape[0]
        start = step * batch_size
        rows = []
        while len(rows) < batch_size:  # a batch may straddle epochs (and span several if n is tiny)
            epoch, offset = divmod(start + len(rows), n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_step_seed(seed, -1 - epoch)))
            rows.extend(order[offset : offset + batch_size - len(rows)].tolist())
        index = _rank_rows(torch.tensor(rows), rank, world)
        return self.train_images[index], self.train_labels[index]

    def test_set(self):
        return self.test_images, self.test_labels

    def probe_train_set(self, count):
        return self.train_images[:count], self.train_labels[:count]


def _step_seed(seed: int, step: int) -> int:
    """A distinct 63-bit seed per (seed, step); steps < 0 are used for epoch permutations."""
    return (int(seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9 + 1) % (2**63 - 1)
