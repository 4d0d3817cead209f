"""The Parseval retraction (Cisse et al., 2017, "Parseval Networks"), as used by the Laplacian-networks
authors (cadurosar/laplacian_networks, cifar_10/cifar10.py, do_parseval)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def parseval_step(model: nn.Module, beta: float = 0.01) -> None:
    """One step W ← (1 + β)·W − β·W·Wᵀ·W toward a Parseval tight frame (W·Wᵀ = I), in place.

    Call it after each optimizer step. It applies to every parameter of model with more than one
    dimension, viewed as (out, rest): conv weights (out, in, kh, kw) as (out, in·kh·kw), Linear weights as
    they are; biases and BatchNorm scales (one dimension) are left alone. Each singular value σ of W moves to
    (1 + β)σ − βσ³, whose fixed point is 1 (stable for 0 < σ < sqrt((1 + β) / β) and small β): the rows
    become orthonormal where W has no more rows than columns.

    What the Laplacian-networks authors apply it to: with --beta > 0 they train PreActResNet18Parseval
    (parseval=True in PreActResNet: conv weights scaled by 1/sqrt(2·kh·kw + 1), blocks averaging residual and
    shortcut 0.5/0.5) and after every optimizer step retract every parameter with more than one dimension —
    all its convolutions (3×3 and the 1×1 shortcuts, including the first conv) and the final Linear layer —
    with β = their --beta (0.01 in their P/PR runs), the "P" (Parseval) and "PR" (Parseval + graph
    regularizer) variants of their robustness comparison."""
    if not isinstance(beta, int | float) or isinstance(beta, bool) or not beta > 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    for param in model.parameters():
        if param.dim() < 2:
            continue
        w = param.reshape(param.shape[0], -1)
        new = (1 + beta) * w - beta * (w @ w.t() @ w)
        param.copy_(new.reshape(param.shape))
