"""Gradient attacks on a classifier: FGSM with its step set by a per-sample SNR (as the
Laplacian-networks authors measure robustness) and L∞ PGD. Both run the model in eval mode, restore
every submodule's mode afterwards, and leave no gradient on the model's parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from latentops.ops.checks import check_bool, check_int, check_real
from latentops.robustness._common import (
    check_images,
    check_model,
    energy,
    noise_energy,
    per_sample,
    resolve_generator,
)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _check_loss(loss) -> Loss:
    if loss is None:
        return F.cross_entropy
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(output, y), got {type(loss).__name__}")
    return loss


def _check_labels(y, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one target per sample of x (N = {x.shape[0]}), got shape {tuple(y.shape)}")
    return y


def _input_gradient(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ loss(model(x), y) without touching the parameters' .grad."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss(model(x), y)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError("loss must return a scalar tensor")
        (grad,) = torch.autograd.grad(value, x)
    return grad


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    snr_db: float = 33.0,
    loss: Loss | None = None,
    clamp: bool = False,
) -> torch.Tensor:
    """The fast gradient sign attack x + δ_i·sign(∇ₓ L(model(x), y)) on images x (N, ...) in [0, 1],
    with δ_i chosen per sample so that the perturbation's SNR 10·log10(‖x_i‖² / ‖δ_i·sign(g_i)‖²)
    equals snr_db exactly (as the Laplacian-networks authors set it; entries with a zero gradient
    are not moved). loss defaults to cross-entropy; its reduction does not matter (only the sign of the
    gradient is used, as long as each sample's loss enters with a positive weight). clamp=True clips the
    result to [0, 1] afterwards, which can only lower the perturbation's energy."""
    check_model("model", model)
    check_images("x", x)
    y = _check_labels(y, x)
    snr_db = check_real("snr_db", snr_db)
    loss = _check_loss(loss)
    clamp = check_bool("clamp", clamp)
    with _eval_mode(model):
        sign = _input_gradient(model, loss, x, y).sign()
    moved = energy(sign)  # the number of nonzero entries per sample
    wanted = noise_energy(energy(x), snr_db)
    delta = torch.where(moved > 0, (wanted / moved).sqrt(), torch.zeros_like(moved))
    out = (x.detach().to(torch.float64) + per_sample(delta, x) * sign.to(torch.float64)).to(x.dtype)
    return out.clamp_(0.0, 1.0) if clamp else out


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step: float,
    iterations: int,
    random_start: bool = False,
    loss: Loss | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """L∞ projected gradient ascent on loss(model(x̃), y) (cross-entropy by default): `iterations`
    steps x̃ ← Π(x̃ + step·sign(∇ L)), where Π projects onto the ε-ball ‖x̃ − x‖∞ ≤ eps and onto
    [0, 1] after every step. random_start starts from x + U(−eps, eps) (projected), drawn from
    `generator` or `seed` (or torch's global generator)."""
    check_model("model", model)
    check_images("x", x)
    y = _check_labels(y, x)
    eps = check_real("eps", eps, minimum=0.0)
    step = check_real("step", step, minimum=0.0, open_minimum=True)
    iterations = check_int("iterations", iterations, minimum=1)
    random_start = check_bool("random_start", random_start)
    loss = _check_loss(loss)
    gen = resolve_generator(generator, seed, x.device)
    x = x.detach()
    low, high = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    adv = x.clone()
    if random_start:
        start = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * (2 * eps) - eps
        adv = torch.minimum(torch.maximum(x + start, low), high)
    with _eval_mode(model):
        for _ in range(iterations):
            grad = _input_gradient(model, loss, adv, y)
            adv = torch.minimum(torch.maximum(adv + step * grad.sign(), low), high)
    return adv
