"""scikit-learn's bundled 8×8 handwritten digits (1,797 images): a small real dataset that needs
no files. The last 297 images (a fixed split) are the test set."""

from __future__ import annotations

import torch

from latentops.data.dataset import ArrayDataset

TEST_COUNT = 297


def load_digits() -> ArrayDataset:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:  # scikit-learn is an optional dependency
        raise ImportError("the digits dataset needs scikit-learn: pip install scikit-learn") from error
    bunch = sklearn_digits()
    # Pixel values are counts 0..16 of an original 4×4 block; map them to [−1, 1].
    images = torch.from_numpy(bunch.images).float().div_(8.0).sub_(1.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    return ArrayDataset(
        "digits", images[:-TEST_COUNT], labels[:-TEST_COUNT], images[-TEST_COUNT:], labels[-TEST_COUNT:]
    )
