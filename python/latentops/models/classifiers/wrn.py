"""Wide residual networks WRN-depth-width as in the graph knowledge distillation code (cadurosar/graph_kd,
models/preact_resnet.py, PreActWideResNetStart; teacher WRN-28-1, student WRN-28-0.5): a 3×3 conv to 16
channels, BN, ReLU, then three groups of n = (depth − 4) / 6 basic blocks of 16·width, 32·width, 64·width
channels (rounded, at least 1; strides 1, 2, 2). A block is conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut
(identity, or 1×1 conv + BN where the stride or width changes), then ReLU. Global average pooling, Linear.

Taps: the 3 group outputs, as the authors — the first two are feature maps, the last is the final
group's output (ending in BN-ReLU) after global average pooling, (batch, channels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.classifiers.base import Classifier, check_positive_int


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def wrn_channels(width: float) -> tuple[int, int, int]:
    """The channels of the three groups: 16·width, 32·width, 64·width rounded, at least 1."""
    return tuple(max(1, round(base * width)) for base in (16, 32, 64))  # type: ignore[return-value]


class WideResNet(Classifier):
    """WRN-depth-width; depth = 6n + 4 (n ≥ 1 blocks per group), width > 0 multiplies the group channels."""

    def __init__(self, image_shape, num_classes: int, depth: int = 28, width: float = 1.0):
        super().__init__(image_shape, num_classes)
        depth = check_positive_int("depth", depth)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n ≥ 1 (10, 16, 22, 28, ...), got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        self.depth, self.width = depth, float(width)
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(self.image_shape[0], 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        groups, planes = [], 16
        for i, out_planes in enumerate(wrn_channels(width)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(planes, out_planes, 2 if i > 0 and j == 0 else 1))
                planes = out_planes
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.ModuleList(groups)
        self.linear = nn.Linear(planes, self.num_classes)

    def _forward(self, x):
        out = F.relu(self.bn(self.conv1(x)))
        out = self.groups[0](out)
        tap1 = out
        out = self.groups[1](out)
        tap2 = out
        pooled = self.groups[2](out).mean(dim=(2, 3))
        taps: list[torch.Tensor] = [tap1, tap2, pooled]
        return self.linear(pooled), taps


class WRN28x1(WideResNet):
    """WRN-28-1, the authors' teacher (about 0.37 M parameters for 10 classes on CIFAR)."""

    def __init__(self, image_shape, num_classes: int):
        super().__init__(image_shape, num_classes, depth=28, width=1.0)


class WRN28x05(WideResNet):
    """WRN-28-0.5, the authors' student (channels 8/16/32)."""

    def __init__(self, image_shape, num_classes: int):
        super().__init__(image_shape, num_classes, depth=28, width=0.5)
