"""CIFAR-100 from the python version its publishers distribute (cifar-100-python.tar.gz, extracted):
the pickles `train` and `test`, dicts with b"data" (N, 3072) uint8 in CIFAR-10's layout (rows of R, G,
B planes of 32×32), b"fine_labels" (100 classes) and b"coarse_labels" (20 superclasses).

The files are pickles: load only files from a source you trust."""

from __future__ import annotations

from latentops.data.cifar10 import read_python_batch
from latentops.data.dataset import ArrayDataset
from latentops.data.files import find_files

TRAIN_FILES = ["train"]
TEST_FILES = ["test"]
SOURCE = "cifar-100-python.tar.gz, extracted (the folder cifar-100-python)"
# labels= value → (the batches' key, the number of classes)
LABELS = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}


def load_cifar100(data_dir, labels: str = "fine") -> ArrayDataset:
    """CIFAR-100 with its 100 fine classes (labels="fine") or its 20 coarse superclasses
    (labels="coarse"); images float32 (N, 3, 32, 32) in [−1, 1]."""
    if not isinstance(labels, str) or labels not in LABELS:
        raise ValueError(f"labels must be 'fine' (100 classes) or 'coarse' (20 superclasses), got {labels!r}")
    label_key, num_classes = LABELS[labels]
    train_path, test_path = find_files(
        data_dir, "cifar100", "cifar-100-python", [[name] for name in TRAIN_FILES + TEST_FILES], SOURCE
    )
    train_images, train_labels = read_python_batch(train_path, label_key, num_classes)
    test_images, test_labels = read_python_batch(test_path, label_key, num_classes)
    return ArrayDataset("cifar100", train_images, train_labels, test_images, test_labels, num_classes=num_classes)
