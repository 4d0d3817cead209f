"""CIFAR-10 from the python batches its publishers distribute (cifar-10-python.tar.gz, extracted):
pickled dicts with b"data" (N, 3072) uint8, rows of R, G, B planes of 32×32, and b"labels".

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


def _read_batch(path) -> tuple[torch.Tensor, torch.Tensor]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32))
    return images.div_(127.5).sub_(1.0), torch.from_numpy(labels)


def load_cifar10(data_dir) -> ArrayDataset:
    paths = find_files(
        data_dir, "cifar10", "cifar-10-batches-py", [[name] for name in TRAIN_FILES + TEST_FILES], SOURCE
    )
    batches = [_read_batch(path) for path in paths]
    train = batches[: len(TRAIN_FILES)]
    test_images, test_labels = batches[-1]
    return ArrayDataset(
        "cifar10", torch.cat([b[0] for b in train]), torch.cat([b[1] for b in train]), test_images, test_labels
    )
