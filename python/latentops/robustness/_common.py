"""Shared pieces of the robustness helpers: the random generator from `generator` or `seed`, the
check that an input is a batch of images in [0, 1], and per-sample energies."""

from __future__ import annotations

import torch
from torch import nn

from latentops.ops.checks import check_int, check_tensor


def resolve_generator(generator, seed, device: torch.device) -> torch.Generator | None:
    """The generator to draw with: `generator` as given, a fresh one seeded with `seed` on `device`,
    or None (torch's global generator) when neither is given; giving both is refused."""
    if generator is not None and seed is not None:
        raise ValueError("give generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != torch.device(device).type:
            raise ValueError(f"generator must be on the input's device {device}, got one on {generator.device}")
        return generator
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
        return torch.Generator(device=device).manual_seed(seed)
    return None


def check_images(name: str, x) -> torch.Tensor:
    """A float tensor (N, ...) with N ≥ 1 whose values lie in [0, 1]."""
    check_tensor(name, x)
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a batch (N, ...) with N ≥ 1, got shape {tuple(x.shape)}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(f"{name} must hold images with values in [0, 1] (no NaN), got values outside it")
    return x


def check_model(name: str, model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def energy(t: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 norm in float64, shape (N,)."""
    return t.detach().to(torch.float64).reshape(t.shape[0], -1).square().sum(dim=1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (N,) vector shaped to broadcast against `like` (N, ...)."""
    return v.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def noise_energy(clean_energy: torch.Tensor, snr_db: float) -> torch.Tensor:
    """The per-sample energy ‖n‖² with 10·log10(‖x‖² / ‖n‖²) = snr_db."""
    return clean_energy / 10.0 ** (snr_db / 10.0)
