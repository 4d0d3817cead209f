"""Argument checks shared by the ops and the nn modules: each error names the argument and says
what it got (TypeError for a wrong type or dtype, ValueError for a wrong value or shape)."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_tensor(name: str, value) -> torch.Tensor:
    """A float tensor (float32, float16, bfloat16 or float64)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16, bfloat16 or float64, got {value.dtype}")
    return value


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        got = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors must be on one device, got {got}")
    return next(iter(devices.values()))


def check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_int(name: str, value, *, minimum: int = 1, optional: bool = False) -> int | None:
    """An int ≥ minimum (bool refused), or None where optional."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"{'None or ' if optional else ''}an integer ≥ {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_vectors(z: torch.Tensor, codebook: torch.Tensor) -> tuple[int, int]:
    """z (..., D) and codebook (K, D) with K, D ≥ 1, on one device: returns (K, D)."""
    check_tensor("z", z)
    check_tensor("codebook", codebook)
    check_same_device(z=z, codebook=codebook)
    if codebook.dim() != 2 or codebook.shape[0] == 0:
        raise ValueError(f"codebook must be 2-D (K, D) with K ≥ 1, got shape {tuple(codebook.shape)}")
    if z.dim() < 1:
        raise ValueError("z must have at least one dimension (..., D), got a scalar")
    k, d = codebook.shape
    if d == 0 or z.shape[-1] != d:
        raise ValueError(
            f"z's last dimension must equal codebook's D = {d} ≥ 1: "
            f"got z {tuple(z.shape)} and codebook {tuple(codebook.shape)}"
        )
    return k, d


ACCURACIES = ("exact", "fast")
