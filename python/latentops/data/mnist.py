"""MNIST from the IDX files LeCun et al. distribute (gzipped or not), padded to 32×32 as ACAI does."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from latentops.data.dataset import ArrayDataset
from latentops.data.files import find_files

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SOURCE = "the MNIST distribution: train-/t10k- images-idx3-ubyte and labels-idx1-ubyte, .gz or not"
# IDX type codes (the third byte of the magic number) and their big-endian numpy types.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """An IDX file (magic 0x0000 TT NN, NN big-endian uint32 dimensions, then the data) as an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    shape = tuple(np.frombuffer(data, ">u4", ndim, 4).tolist())
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(shape)) if shape else 1
    offset = 4 + 4 * ndim
    if len(data) < offset + count * dtype.itemsize:
        raise ValueError(
            f"{path} is truncated: shape {shape} needs {count * dtype.itemsize} data bytes, got {len(data) - offset}"
        )
    return np.frombuffer(data, dtype, count, offset).reshape(shape)


def load_mnist(data_dir) -> ArrayDataset:
    names = [[name + ".gz", name] for name in FILES.values()]
    paths = dict(zip(FILES, find_files(data_dir, "mnist", "mnist", names, SOURCE)))
    splits = {}
    for split in ("train", "test"):
        images = torch.from_numpy(read_idx(paths[f"{split}_images"]).astype(np.float32))
        labels = torch.from_numpy(read_idx(paths[f"{split}_labels"]).astype(np.int64))
        if images.dim() != 3:
            raise ValueError(
                f"{paths[f'{split}_images']}: expected (N, rows, cols) images, got shape {tuple(images.shape)}"
            )
        images = images.div_(127.5).sub_(1.0).unsqueeze(1)
        # 28×28 → 32×32 with background, so the encoder's 2× poolings divide evenly.
        pad = (32 - images.shape[-1]) // 2
        if pad > 0:
            images = torch.nn.functional.pad(images, (pad, pad, pad, pad), value=-1.0)
        splits[split] = (images, labels)
    return ArrayDataset("mnist", *splits["train"], *splits["test"])
