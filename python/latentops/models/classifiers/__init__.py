"""Classifiers for the graph-regularized training experiments (issue 13).

Every model's forward(x) gives the logits, and model.taps(x) (or forward(x, return_taps=True)) gives
(logits, list of tap tensors), the representations the graph regularizers use."""

from __future__ import annotations

import inspect

from torch import nn

from latentops.models.classifiers.base import Classifier
from latentops.models.classifiers.mlp import MLP
from latentops.models.classifiers.parseval import parseval_step
from latentops.models.classifiers.preact import PreActResNet, PreActResNet18, PreActResNetSmall
from latentops.models.classifiers.vgg import VGG, VGG19
from latentops.models.classifiers.wrn import WideResNet, WRN28x05, WRN28x1

CLASSIFIERS: dict[str, type[Classifier]] = {
    "mlp": MLP,
    "preact": PreActResNet,
    "preact18": PreActResNet18,
    "preact-small": PreActResNetSmall,
    "wrn": WideResNet,
    "wrn-28-1": WRN28x1,
    "wrn-28-0.5": WRN28x05,
    "vgg": VGG,
    "vgg19": VGG19,
}


def build_classifier(name: str, image_shape, num_classes: int, **options) -> nn.Module:
    """CLASSIFIERS[name](image_shape, num_classes, **options); a ValueError names an unknown model and a
    TypeError an option that model does not take (the model itself names a bad value)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")
    cls = CLASSIFIERS[name]
    accepted = list(inspect.signature(cls.__init__).parameters)[3:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"classifier {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return cls(image_shape, num_classes, **options)


__all__ = [
    "CLASSIFIERS",
    "MLP",
    "VGG",
    "VGG19",
    "Classifier",
    "PreActResNet",
    "PreActResNet18",
    "PreActResNetSmall",
    "WRN28x05",
    "WRN28x1",
    "WideResNet",
    "build_classifier",
    "parseval_step",
]
