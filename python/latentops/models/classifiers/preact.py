"""Pre-activation ResNets (He et al., 2016, "Identity Mappings in Deep Residual Networks"), laid out as in
the Laplacian-networks code (cadurosar/laplacian_networks, cifar_10/models/preact_resnet.py): a 3×3 conv
(stride 1: no initial downsampling), stages of pre-activation basic blocks, a final ReLU (no final BN, as
the authors), global average pooling, a Linear head. Inputs are taken as already normalized (the authors
normalize inside forward; here the data pipeline does it).

Taps: each block's two ReLU outputs (BN-ReLU before conv1 and before conv2), then the final ReLU — for
PreActResNet18, 8 blocks × 2 + 1 = 17, the representations the authors' graph smoothness regularizer
compares across layers.

parseval=True gives the authors' Parseval variant (PreActResNet18Parseval): convolutions use
weight / sqrt(2·kh·kw + 1), and a block's output is the convex combination 0.5·residual + 0.5·shortcut, so
that, with parseval_step after each optimizer step, each layer stays close to 1-Lipschitz."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.classifiers.base import Classifier, check_positive_int, check_positive_ints


class ParsevalConv2d(nn.Conv2d):
    """Conv2d whose effective weight is weight / sqrt(2·kh·kw + 1), as the authors' Parseval_Conv2d."""

    def forward(self, x):
        scale = 1.0 / math.sqrt(2 * self.kernel_size[0] * self.kernel_size[1] + 1)
        return self._conv_forward(x, self.weight * scale, self.bias)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3(stride)-BN-ReLU-conv3×3, plus the shortcut (identity, or a 1×1 conv of the first ReLU
    where the stride or width changes). forward returns (relu1, relu2, out)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, parseval: bool = False):
        super().__init__()
        conv = ParsevalConv2d if parseval else nn.Conv2d
        self.parseval = parseval
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut = (
            conv(in_planes, planes, kernel_size=1, stride=stride, bias=False)
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x):
        relu1 = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(relu1)
        relu2 = F.relu(self.bn2(self.conv1(relu1)))
        out = self.conv2(relu2)
        out = 0.5 * out + 0.5 * shortcut if self.parseval else out + shortcut
        return relu1, relu2, out


class PreActResNet(Classifier):
    """Stage i has blocks[i] blocks of width·2^i channels; every stage but the first starts with stride 2.

    Works for any image size (global average pooling); taps: 2·sum(blocks) + 1 ReLU outputs."""

    def __init__(self, image_shape, num_classes: int, blocks=(2, 2, 2, 2), width: int = 64, parseval: bool = False):
        super().__init__(image_shape, num_classes)
        self.blocks = check_positive_ints("blocks", blocks)
        self.width = check_positive_int("width", width)
        if not isinstance(parseval, bool):
            raise ValueError(f"parseval must be a bool, got {parseval!r}")
        self.parseval = parseval
        conv = ParsevalConv2d if parseval else nn.Conv2d
        self.conv1 = conv(self.image_shape[0], width, kernel_size=3, stride=1, padding=1, bias=False)
        layers, planes = [], width
        for stage, count in enumerate(self.blocks):
            out_planes = width * 2**stage
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(PreActBlock(planes, out_planes, stride, parseval))
                planes = out_planes
        self.layers = nn.ModuleList(layers)
        self.linear = nn.Linear(planes, self.num_classes)

    def _forward(self, x):
        out = self.conv1(x)
        taps: list[torch.Tensor] = []
        for block in self.layers:
            relu1, relu2, out = block(out)
            taps += [relu1, relu2]
        out = F.relu(out)
        taps.append(out)
        return self.linear(out.mean(dim=(2, 3))), taps


class PreActResNet18(PreActResNet):
    """PreActResNet18: blocks (2, 2, 2, 2), width 64 (11.2 M parameters for 10 classes); 17 taps."""

    def __init__(self, image_shape, num_classes: int, parseval: bool = False):
        super().__init__(image_shape, num_classes, blocks=(2, 2, 2, 2), width=64, parseval=parseval)


class PreActResNetSmall(PreActResNet):
    """A small PreActResNet for 8×8 digits: blocks (1, 1), width 16 (or `width`); 5 taps."""

    def __init__(self, image_shape, num_classes: int, parseval: bool = False, width: int = 16):
        super().__init__(image_shape, num_classes, blocks=(1, 1), width=width, parseval=parseval)
