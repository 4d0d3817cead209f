"""VGG for 32×32 images, the network of sHAM's CIFAR-10 experiments (Marinò et al., ICPR 2020: VGG19,
whose three fully connected layers they prune, share and encode): stages of 3×3 conv-BN-ReLU, each
closed by a 2×2 max pool (ceil mode, so small images keep at least one pixel), then Linear-ReLU-
Dropout(0.5) twice and the Linear to the logits. VGG19: stages of 2, 2, 4, 4, 4 convs of 64, 128, 256,
512, 512 channels and hidden layers of 4096 (39.0 M parameters for 10 classes, 18.9 M of them in
the fully connected layers).

Taps: each stage's output and each hidden layer's (7 for VGG19)."""

from __future__ import annotations

import torch
from torch import nn

from latentops.models.classifiers.base import Classifier, check_positive_int, check_positive_ints


class VGG(Classifier):
    """VGG with `convs` convolutions per stage; stage s has width·2^s channels (at most 8·width),
    the hidden layers `hidden` units."""

    def __init__(self, image_shape, num_classes: int, convs=(2, 2, 4, 4, 4), width: int = 64, hidden: int = 4096):
        super().__init__(image_shape, num_classes)
        self.convs = check_positive_ints("convs", convs)
        width, hidden = check_positive_int("width", width), check_positive_int("hidden", hidden)
        stages, channels = [], self.image_shape[0]
        for s, count in enumerate(self.convs):
            out = width * 2 ** min(s, 3)
            layers = []
            for _ in range(count):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2, ceil_mode=True)))
        self.layers = nn.ModuleList(stages)
        size = self.image_shape[1:]
        for _ in self.convs:
            size = tuple((s + 1) // 2 for s in size)
        self.hidden = nn.ModuleList([nn.Linear(channels * size[0] * size[1], hidden), nn.Linear(hidden, hidden)])
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(hidden, self.num_classes)

    def _forward(self, x):
        taps: list[torch.Tensor] = []
        for stage in self.layers:
            x = stage(x)
            taps.append(x)
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
            taps.append(x)
            x = self.dropout(x)
        return self.head(x), taps


class VGG19(VGG):
    """VGG19 as sHAM's CIFAR-10 experiments (see the module docstring)."""

    def __init__(self, image_shape, num_classes: int):
        super().__init__(image_shape, num_classes, convs=(2, 2, 4, 4, 4), width=64, hidden=4096)
