"""Argument checks shared by the ops, k-means and the nn modules: each error names the argument and
says what it got (TypeError for a wrong type or dtype, ValueError for a wrong value or shape).
Integer arguments take any integer scalar (Python, numpy or a 0-dim integer tensor: anything with
__index__) but never a bool, which is almost always a slip; real arguments take any finite real
number."""

from __future__ import annotations

import math
import numbers
import operator

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


# The modules keep their state in float32: a constant that overflows it would turn the state into
# inf/NaN at the first update, so it is refused where it is given.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _is_bool(value) -> bool:
    # numpy's bool (numpy.bool_) is no subclass of bool; a bool tensor has __index__.
    kind = type(value)
    return (
        isinstance(value, bool)
        or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))
        or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)
    )


def check_int(name: str, value, *, minimum: int = 1, optional: bool = False) -> int | None:
    """An integer ≥ minimum as a Python int (None passes where optional)."""
    if value is None and optional:
        return None
    allowed = f"{'None or ' if optional else ''}an integer ≥ {minimum}"
    if _is_bool(value):
        raise TypeError(f"{name} must be {allowed}, got the bool {value!r}")
    try:
        if isinstance(value, torch.Tensor) and value.dim() != 0:
            raise TypeError  # torch's __index__ also takes [2]: a shape slip, not a count
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{name} must be {allowed}, got {number}")
    return number


def check_real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    open_minimum: bool = False,
    maximum: float = FLOAT32_MAX,
    open_maximum: bool = False,
) -> float:
    """A finite real number in the given range, as a Python float (ints and numpy floats pass)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    bounds = [] if minimum is None else [f"{'>' if open_minimum else '≥'} {minimum:g}"]
    if maximum != FLOAT32_MAX or open_maximum:
        bounds.append(f"{'<' if open_maximum else '≤'} {maximum:g}")
    wanted = f"{name} must be a finite float32 number {' and '.join(bounds)}".rstrip()
    if not math.isfinite(number):
        raise ValueError(f"{wanted}, got {number!r}")
    if minimum is not None and (number <= minimum if open_minimum else number < minimum):
        raise ValueError(f"{wanted}, got {number!r}")
    if number >= maximum if open_maximum else number > maximum:
        raise ValueError(f"{wanted}, got {number!r}")
    return number


def check_bool(name: str, value) -> bool:
    """A bool (numpy's too): a string such as "no" or a number is refused, not read as truthy."""
    if not _is_bool(value) or isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(name: str, value, choices: tuple, *, optional: bool = False):
    """One of `choices` (None too where optional)."""
    if value is None and optional:
        return None
    if isinstance(value, torch.Tensor) or value not in choices:
        allowed = f"{'None or ' if optional else ''}one of {choices}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value
