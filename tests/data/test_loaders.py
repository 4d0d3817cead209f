"""The MNIST, SVHN, CIFAR-10 and CIFAR-100 loaders on small files written here in their publishers' formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from latentops.data import load_dataset
from latentops.data.cifar100 import load_cifar100


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


def _write_cifar100(folder, rng):
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, n in (("train", 5), ("test", 4)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[0, :2] = [0, 255]  # both ends of the pixel range
        fine = rng.integers(0, 100, n)
        fine[-1] = 99
        coarse = (fine // 5).tolist()
        batch = {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(), b"data": data}
        batch |= {b"fine_labels": fine.tolist(), b"coarse_labels": coarse}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        splits[name] = data, fine.tolist(), coarse
    return splits


@pytest.mark.parametrize("labels, num_classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse_labels(tmp_path, labels, num_classes):
    raw = _write_cifar100(tmp_path / "cifar-100-python", np.random.default_rng(4))
    dataset = load_cifar100(tmp_path, labels=labels)
    assert dataset.name == "cifar100" and dataset.num_classes == num_classes
    assert dataset.image_shape == (3, 32, 32) and dataset.train_images.shape == (5, 3, 32, 32)
    assert dataset.train_images.dtype == torch.float32 and dataset.train_labels.dtype == torch.int64
    column = 1 if labels == "fine" else 2
    assert dataset.train_labels.tolist() == raw["train"][column]
    images, test_labels = dataset.test_set()
    assert images.shape == (4, 3, 32, 32) and test_labels.tolist() == raw["test"][column]
    for split in (dataset.train_images, images):
        assert split.min() == -1 and split.max() == 1  # 0 and 255 map to the ends of [−1, 1]
    data = raw["test"][0]
    # Rows hold the R, G and B planes of 32×32 in turn, like CIFAR-10's.
    expected = torch.from_numpy(data[3, 2048:].reshape(32, 32).astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(images[3, 2], expected)


def test_cifar100_default_is_fine_and_files_may_sit_in_data_dir(tmp_path):
    raw = _write_cifar100(tmp_path, np.random.default_rng(5))
    dataset = load_cifar100(tmp_path)
    assert dataset.num_classes == 100 and dataset.test_labels.tolist() == raw["test"][1]


def test_cifar100_missing_files_are_named_with_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz") as info:
        load_cifar100(tmp_path)
    message = str(info.value)
    assert "train" in message and "test" in message and "--data-dir" in message
    assert str(tmp_path / "cifar-100-python") in message
    _write_cifar100(tmp_path / "cifar-100-python", np.random.default_rng(6))
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(FileNotFoundError, match="missing test under"):
        load_cifar100(tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_cifar100(None)


@pytest.mark.parametrize(
    "batch",
    [
        {b"data": np.zeros((2, 3071), np.uint8), b"fine_labels": [0, 1], b"coarse_labels": [0, 1]},  # short rows
        {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0], b"coarse_labels": [0]},  # too few labels
        {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100], b"coarse_labels": [0, 1]},  # class 100
        {b"data": np.zeros((2, 3072), np.uint8), b"coarse_labels": [0, 1]},  # no fine labels
        {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": ["a", "b"], b"coarse_labels": [0, 1]},
        [np.zeros((2, 3072), np.uint8)],  # not a dict
    ],
)
def test_cifar100_a_malformed_batch_is_refused_by_name(tmp_path, batch):
    folder = tmp_path / "cifar-100-python"
    _write_cifar100(folder, np.random.default_rng(7))
    with open(folder / "test", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(ValueError, match="cifar-100-python/test"):
        load_cifar100(tmp_path)


def test_cifar100_a_truncated_pickle_is_refused_by_name(tmp_path):
    folder = tmp_path / "cifar-100-python"
    _write_cifar100(folder, np.random.default_rng(8))
    path = folder / "train"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cifar-100-python/train"):
        load_cifar100(tmp_path)


def test_cifar100_coarse_labels_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    _write_cifar100(folder, np.random.default_rng(9))
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [42], b"coarse_labels": [20]}
    with open(folder / "train", "wb") as f:
        pickle.dump(batch, f)
    assert load_cifar100(tmp_path, labels="fine").train_labels.tolist() == [42]
    with pytest.raises(ValueError, match=r"cifar-100-python/train.*\[0, 20\)"):
        load_cifar100(tmp_path, labels="coarse")


@pytest.mark.parametrize("labels", ["superclass", "Fine", None, 100])
def test_cifar100_bad_labels_argument(tmp_path, labels):
    with pytest.raises(ValueError, match=r"labels must be 'fine'.*or 'coarse'"):
        load_cifar100(tmp_path, labels=labels)


def test_cifar10_a_malformed_batch_is_refused_by_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 9]}, f)
    assert load_dataset("cifar10", tmp_path).test_labels.tolist() == [0, 9]
    with open(folder / "data_batch_4", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f)
    with pytest.raises(ValueError, match="data_batch_4"):
        load_dataset("cifar10", tmp_path)


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
