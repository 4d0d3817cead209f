"""The options of `latentops classify`, in the order its --help lists them; TrainingOptions is also
`latentops distill`'s."""

from __future__ import annotations

import dataclasses
import math

from latentops.data import DATASETS
from latentops.models.classifiers import CLASSIFIERS
from latentops.pipelines import run_options as run
from latentops.pipelines.options import COUNT, POSITIVE, Check, option

NON_NEGATIVE = Check("a number ≥ 0", lambda v: isinstance(v, (int, float)) and v >= 0 and math.isfinite(v))


def parse_milestones(text: str) -> list[float]:
    """ "0.3,0.6,0.8" → [0.3, 0.6, 0.8]: increasing fractions of training in (0, 1); "" → []."""
    if not isinstance(text, str):
        raise ValueError(f"--lr-milestones must be a string of fractions, got {text!r}")
    if not text.strip():
        return []
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--lr-milestones must be comma-separated numbers in (0, 1), got {text!r}") from None
    if any(not 0 < v < 1 for v in values) or values != sorted(set(values)):
        raise ValueError(f"--lr-milestones must be increasing fractions of training in (0, 1), got {text!r}")
    return values


def _valid_milestones(text) -> bool:
    try:
        parse_milestones(text)
    except ValueError:
        return False
    return True


MILESTONES = Check("increasing fractions in (0, 1), comma-separated (e.g. 0.5 or 0.3,0.6,0.8)", _valid_milestones)


@dataclasses.dataclass(kw_only=True)
class _Classifier:
    """What `latentops classify` trains on: the model and the data."""

    arch: str = option("preact-small", choices=CLASSIFIERS, help="the classifier (latentops.models.classifiers)")
    dataset: str = option("digits", choices=DATASETS)
    data_dir: str | None = option(None, help="folder with the mnist / svhn / cifar10 / cifar100 files")
    train_per_class: int | None = option(
        None, check=COUNT, help="digits: train on the first N images of each class, test on all the others"
    )
    width: float | None = option(
        None,
        check=POSITIVE,
        help="channels of the first stage (preact, preact-small, vgg; wrn: its widening factor; mlp: units of "
        "both hidden layers)",
    )


@dataclasses.dataclass(kw_only=True)
class TrainingOptions:
    """How a classifier is trained, for `latentops classify` and `latentops distill` alike. Defaults
    follow the Laplacian-networks authors on CIFAR-10 (SGD 0.1, momentum 0.9, weight decay 5e-4,
    batch 100, the rate ×0.01 halfway), scaled to digits."""

    epochs: float | None = option(
        None, check=POSITIVE, help="training length in epochs of the training set (sets --steps)"
    )
    steps: int = run.steps(3_000, help="training steps (default 3000; --epochs sets it from the dataset's size)")
    batch_size: int = run.batch_size(100)
    lr: float = option(0.1, check=POSITIVE)
    momentum: float = option(0.9, check=NON_NEGATIVE)
    weight_decay: float = option(5e-4, check=NON_NEGATIVE)
    lr_milestones: str = option("0.5", check=MILESTONES, help="fractions of training where the rate drops")
    lr_gamma: float = option(0.01, check=POSITIVE, help="the rate's factor at each milestone")
    augment: str = option(
        "none",
        choices=("none", "crop-flip"),
        help="crop-flip: random crops (padding 1/8 of the side) and horizontal flips",
    )
    loss: str = option(
        "ce",
        choices=("ce", "geo"),
        help="ce: cross-entropy; geo: GeometryTargetLoss on the output, classified by nearest class mean",
    )
    smoothness: float = option(
        0.0,
        check=NON_NEGATIVE,
        help="γ of the Laplacian-networks regularizer γ^m·mean_l |s_l − s_{l−1}| (0: off; the authors: 0.01)",
    )
    smoothness_power: int = option(2, check=COUNT, help="m: the Laplacian's power in s_l = tr(Yᵀ L_l^m Y)")
    graph_k: int | None = option(
        None, check=COUNT, help="k-NN graphs for the regularizer (default: the full graph, as the authors)"
    )
    parseval: float = option(
        0.0, check=NON_NEGATIVE, help="β of the Parseval retraction after each step (0: off; the authors: 0.01)"
    )
    device: str = run.device()
    backend: str = run.backend()
    threads: int | None = run.threads()
    seed: int = run.seed()
    eval_every: int | None = run.eval_every()
    checkpoint_every: int | None = run.checkpoint_every()
    log_every: int = run.log_every()
    eval_batch: int = option(500, check=COUNT, help="test images whose per-layer smoothness each evaluation reports")
    resume: bool = run.resume()
    progress: bool = run.progress()
    out: str = run.out()


@dataclasses.dataclass(kw_only=True)
class ClassifyConfig(TrainingOptions, _Classifier):  # fields: _Classifier's, then TrainingOptions'
    """One `latentops classify` run."""
