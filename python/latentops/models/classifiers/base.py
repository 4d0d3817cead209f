"""What every classifier provides: forward(x) gives the logits; taps(x) (or forward(x, return_taps=True))
gives (logits, taps), the intermediate representations the graph regularizers compare."""

from __future__ import annotations

import torch
from torch import nn


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """(channels, height, width), positive ints; raises ValueError naming image_shape otherwise."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (channels, height, width) of positive ints, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def check_positive_int(name: str, value) -> int:
    """value as an int ≥ 1; raises ValueError naming `name` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_positive_ints(name: str, values, *, min_len: int = 1) -> tuple[int, ...]:
    """values as a tuple of ints ≥ 1 (at least min_len of them); raises ValueError naming `name` otherwise."""
    try:
        out = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}") from None
    if len(out) < min_len or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
        raise ValueError(f"{name} must be a sequence of at least {min_len} positive ints, got {values!r}")
    return out


class Classifier(nn.Module):
    """Base of the classifiers: subclasses implement _forward(x) -> (logits, taps)."""

    def __init__(self, image_shape, num_classes: int):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.num_classes = check_positive_int("num_classes", num_classes)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, return_taps: bool = False):
        logits, taps = self._forward(x)
        return (logits, taps) if return_taps else logits

    def taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, list of tap tensors), batch first."""
        return self._forward(x)
