"""SVHN (cropped digits) from the .mat files its publishers distribute: X is (32, 32, 3, N) uint8,
y is (N, 1) with label 10 for the digit 0."""

from __future__ import annotations

import numpy as np
import torch

from latentops.data.dataset import ArrayDataset
from latentops.data.files import find_files

FILES = ["train_32x32.mat", "test_32x32.mat"]
SOURCE = "the SVHN 'Format 2' cropped digits: train_32x32.mat and test_32x32.mat"


def load_svhn(data_dir) -> ArrayDataset:
    from scipy.io import loadmat  # scipy only for this dataset

    paths = find_files(data_dir, "svhn", "svhn", [[name] for name in FILES], SOURCE)
    splits = []
    for path in paths:
        mat = loadmat(path)
        if "X" not in mat or "y" not in mat:
            raise ValueError(
                f"{path}: expected variables X and y, got {sorted(k for k in mat if not k.startswith('__'))}"
            )
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
            raise ValueError(f"{path}: expected X of shape (32, 32, 3, N) and N labels, got {x.shape} and {y.shape}")
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.float32))
        labels = torch.from_numpy(y.astype(np.int64) % 10)  # 10 stands for the digit 0
        splits += [images.div_(127.5).sub_(1.0), labels]
    return ArrayDataset("svhn", *splits)
