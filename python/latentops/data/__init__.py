"""latentops.data: the synthetic lines benchmark, scikit-learn's digits and loaders for MNIST, SVHN,
CIFAR-10 and CIFAR-100 from local files, behind one interface (ImageDataset)."""

from __future__ import annotations

from latentops.data.dataset import ArrayDataset, ImageDataset, LinesDataset
from latentops.data.lines import draw_lines

DATASETS = ("lines", "digits", "mnist", "svhn", "cifar10", "cifar100")


def load_dataset(name: str, data_dir=None, *, train_per_class: int | None = None) -> ImageDataset:
    """The dataset `name` (one of DATASETS); mnist, svhn, cifar10 and cifar100 read their files from data_dir.
    train_per_class (digits only): the first N images of each class train, all others test."""
    if train_per_class is not None and name != "digits":
        raise ValueError(f"train_per_class applies to the digits dataset only, got dataset {name!r}")
    if name == "lines":
        return LinesDataset()
    if name == "digits":
        from latentops.data.digits import load_digits

        return load_digits(train_per_class)
    if name == "mnist":
        from latentops.data.mnist import load_mnist

        return load_mnist(data_dir)
    if name == "svhn":
        from latentops.data.svhn import load_svhn

        return load_svhn(data_dir)
    if name == "cifar10":
        from latentops.data.cifar10 import load_cifar10

        return load_cifar10(data_dir)
    if name == "cifar100":
        from latentops.data.cifar100 import load_cifar100

        return load_cifar100(data_dir)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


__all__ = ["DATASETS", "ArrayDataset", "ImageDataset", "LinesDataset", "draw_lines", "load_dataset"]
