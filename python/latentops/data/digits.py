"""scikit-learn's bundled 8×8 handwritten digits (1,797 images): a small real dataset that needs
no files. By default the last 297 images (a fixed split) are the test set; train_per_class=N takes
the first N images of each class for training and leaves all the others (a larger test set) for
testing, as small-data experiments want."""

from __future__ import annotations

import torch

from latentops.data.dataset import ArrayDataset

TEST_COUNT = 297
NUM_CLASSES = 10
MIN_CLASS_COUNT = 174  # the rarest digit's images: train_per_class must leave some of each for testing


def load_digits(train_per_class: int | None = None) -> ArrayDataset:
    if train_per_class is not None and (
        isinstance(train_per_class, bool)
        or not isinstance(train_per_class, int)
        or not 1 <= train_per_class < MIN_CLASS_COUNT
    ):
        raise ValueError(
            f"train_per_class must be an int in [1, {MIN_CLASS_COUNT - 1}] (the rarest digit has "
            f"{MIN_CLASS_COUNT} images), got {train_per_class!r}"
        )
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:  # scikit-learn is an optional dependency
        raise ImportError("the digits dataset needs scikit-learn: pip install scikit-learn") from error
    bunch = sklearn_digits()
    # Pixel values are counts 0..16 of an original 4×4 block; map them to [−1, 1].
    images = torch.from_numpy(bunch.images).float().div_(8.0).sub_(1.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    if train_per_class is None:
        train = torch.arange(len(labels) - TEST_COUNT)
        test = torch.arange(len(labels) - TEST_COUNT, len(labels))
    else:
        # The rank of each image among those of its class, in the dataset's order.
        rank = torch.empty_like(labels)
        for c in range(NUM_CLASSES):
            where = (labels == c).nonzero().squeeze(1)
            rank[where] = torch.arange(len(where))
        train, test = (rank < train_per_class).nonzero().squeeze(1), (rank >= train_per_class).nonzero().squeeze(1)
    return ArrayDataset("digits", images[train], labels[train], images[test], labels[test])
