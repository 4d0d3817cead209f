"""CIFAR-10 from the python batches its publishers distribute (cifar-10-python.tar.gz, extracted):
pickled dicts with b"data" (N, 3072) uint8, rows of R, G, B planes of 32×32, and b"labels".
CIFAR-100's python version uses the same layout (cifar100.py reads it with read_python_batch).

The batches are pickles: load only files from a source you trust."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from latentops.data.dataset import ArrayDataset
from latentops.data.files import find_files

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
SOURCE = "cifar-10-python.tar.gz, extracted (the folder cifar-10-batches-py)"


def read_python_batch(path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 (N, 3, 32, 32) in [−1, 1] and labels int64 (N,) of one pickled batch of a
    CIFAR python version, its labels under `label_key`, each in [0, num_classes). A file that is not
    such a batch is a ValueError naming it."""
    with open(path, "rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
        except Exception as err:  # a truncated or foreign pickle fails in many ways
            raise ValueError(f"{path}: not a pickled CIFAR batch ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: expected a pickled dict with keys b'data' and {label_key!r}")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{path}: b'data' and {label_key!r} must be arrays of integers ({err})") from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: {label_key!r} must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32))
    return images.div_(127.5).sub_(1.0), torch.from_numpy(labels)


def load_cifar10(data_dir) -> ArrayDataset:
    paths = find_files(
        data_dir, "cifar10", "cifar-10-batches-py", [[name] for name in TRAIN_FILES + TEST_FILES], SOURCE
    )
    batches = [read_python_batch(path, b"labels", 10) for path in paths]
    train = batches[: len(TRAIN_FILES)]
    test_images, test_labels = batches[-1]
    return ArrayDataset(
        "cifar10", torch.cat([b[0] for b in train]), torch.cat([b[1] for b in train]), test_images, test_labels
    )
