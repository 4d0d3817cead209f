"""A multilayer perceptron on flattened images."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.classifiers.base import Classifier, check_positive_ints


class MLP(Classifier):
    """Flatten, then Linear-ReLU for each of `widths`, then a Linear to the logits.

    Taps: each hidden ReLU output, (batch, width). `width` (the CLI's --width) replaces `widths` by
    two hidden layers of that many units."""

    def __init__(self, image_shape, num_classes: int, widths=(256, 128), width: int | None = None):
        super().__init__(image_shape, num_classes)
        self.widths = check_positive_ints("widths", widths if width is None else (width, width))
        sizes = [math.prod(self.image_shape), *self.widths]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(sizes[-1], self.num_classes)

    def _forward(self, x):
        out = x.flatten(1)
        taps: list[torch.Tensor] = []
        for layer in self.hidden:
            out = F.relu(layer(out))
            taps.append(out)
        return self.head(out), taps
