"""The MNIST, SVHN and CIFAR-10 loaders on small files written here in their publishers' formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from latentops.data import load_dataset


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder, gzipped: bool, rng):
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", 7), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        data[prefix] = images, labels
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}"
            if gzipped:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(_idx(array))
            else:
                (folder / name).write_bytes(_idx(array))
    return data


@pytest.mark.parametrize("gzipped", [True, False])
def test_mnist_idx(tmp_path, gzipped):
    rng = np.random.default_rng(0)
    raw = _write_mnist(tmp_path / "mnist", gzipped, rng)
    data = load_dataset("mnist", tmp_path)
    assert data.image_shape == (1, 32, 32)
    images, labels = data.test_set()
    assert images.shape == (3, 1, 32, 32)
    assert labels.tolist() == raw["t10k"][1].tolist()
    # Padded by 2 px of background; pixel values mapped from 0..255 to [−1, 1].
    assert (images[:, :, :2] == -1).all() and (images[:, :, :, -2:] == -1).all()
    expected = torch.from_numpy(raw["t10k"][0].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(images[:, 0, 2:30, 2:30], expected)
    assert data.train_batch(0, 5, seed=0)[0].shape == (5, 1, 32, 32)


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    folder = tmp_path / "svhn"
    folder.mkdir()
    sets = {}
    for split, n in (("train", 6), ("test", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, 10 meaning the digit 0
        y[0, 0] = 10
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        sets[split] = x, y
    data = load_dataset("svhn", tmp_path)
    images, labels = data.test_set()
    x, y = sets["test"]
    assert images.shape == (4, 3, 32, 32) and data.image_shape == (3, 32, 32)
    assert labels[0] == 0 and labels.tolist() == (y[:, 0] % 10).tolist()
    expected = torch.from_numpy(x[..., 1].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    torch.testing.assert_close(images[1], expected)


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 3).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        batches[name] = data, labels
    dataset = load_dataset("cifar10", tmp_path)
    assert dataset.train_images.shape == (15, 3, 32, 32)
    images, labels = dataset.test_set()
    data, expected_labels = batches["test_batch"]
    assert labels.tolist() == expected_labels
    # Rows hold the R, G and B planes of 32×32 in turn.
    torch.testing.assert_close(images[2, 1, 0, 5], torch.tensor(data[2, 1024 + 5] / 127.5 - 1, dtype=torch.float32))


@pytest.mark.parametrize(
    "name, expected", [("mnist", "t10k-labels-idx1-ubyte"), ("svhn", "test_32x32.mat"), ("cifar10", "data_batch_3")]
)
def test_missing_files_are_named_with_where_to_put_them(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError, match=expected) as info:
        load_dataset(name, tmp_path)
    assert str(tmp_path) in str(info.value) and "--data-dir" in str(info.value)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_dataset(name, None)


def test_a_truncated_idx_file_is_reported(tmp_path):
    rng = np.random.default_rng(3)
    _write_mnist(tmp_path, False, rng)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", tmp_path)


def test_digits_needs_no_files():
    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    images, labels = data.test_set()
    assert data.image_shape == (1, 8, 8) and images.shape[0] == 297
    assert images.min() >= -1 and images.max() <= 1 and set(labels.tolist()) == set(range(10))


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="imagenet"):
        load_dataset("imagenet")
