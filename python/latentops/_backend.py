"""Which backends loaded here, and which one runs a given call.

Backends: "cuda" (hand-written kernels in latentops._C), "triton" (latentops.kernels), "cpu" (C++
kernels in latentops._C) and "torch" (the pure-torch reference, always present). A missing extension
or Triton costs a one-line warning at import and falls back to what is there, never an import error.

The choice for a call, first match wins: the call's `backend=` argument, the innermost
`use_backend(...)` context, the LATENTOPS_BACKEND environment variable (read at import), then the
fastest backend present for the tensor's device.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from types import ModuleType

import torch

BACKEND_NAMES = ("cuda", "triton", "cpu", "torch")
_FASTEST_FIRST = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "torch")}


def _load(module: str, what: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # an ImportError, or a broken install raising anything else
        warnings.warn(f"latentops: {what} unavailable ({type(exc).__name__}: {exc}); "
                      "falling back to the other backends", RuntimeWarning, stacklevel=3)
        return None


native: ModuleType | None = _load("latentops._C", "the compiled extension (cpu/cuda backends)")
if native is not None and not native.cpu_supported:
    warnings.warn("latentops: this processor lacks AVX2/FMA, which the C++ CPU kernels need; "
                  "CPU tensors use the torch backend", RuntimeWarning, stacklevel=2)
triton_kernels: ModuleType | None = (
    _load("latentops.kernels", "the Triton kernels")
    if importlib.util.find_spec("triton") is not None else None
)
# Under the Triton interpreter the Triton kernels also run on CPU tensors (how CI tests them).
_TRITON_ON_CPU = os.environ.get("TRITON_INTERPRET") == "1"


def _check_name(name: str, where: str) -> str:
    if name not in BACKEND_NAMES:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of {BACKEND_NAMES}")
    return name


_selected: list[str] = []
_env_backend = os.environ.get("LATENTOPS_BACKEND") or None
if _env_backend is not None:
    _check_name(_env_backend, "LATENTOPS_BACKEND")


def backends() -> list[str]:
    """Names of the backends that loaded in this process (on some device), fastest first."""
    names = []
    if native is not None and native.has_cuda and torch.cuda.is_available():
        names.append("cuda")
    if triton_kernels is not None and (torch.cuda.is_available() or _TRITON_ON_CPU):
        names.append("triton")
    if native is not None and native.cpu_supported:
        names.append("cpu")
    names.append("torch")
    return names


def available_on(device: torch.device) -> list[str]:
    """Backends that can run on tensors of `device`, fastest first."""
    present = backends()
    if device.type == "cuda":
        return [b for b in _FASTEST_FIRST["cuda"] if b in present]
    names = [b for b in _FASTEST_FIRST["cpu"] if b in present]
    if "triton" in present and _TRITON_ON_CPU:
        names.insert(-1, "triton")
    return names if device.type == "cpu" else ["torch"]


@contextlib.contextmanager
def use_backend(name: str | None):
    """Run the latentops ops inside the block on backend `name` (None restores the automatic choice)."""
    if name is not None:
        _check_name(name, "use_backend")
    _selected.append(name)
    try:
        yield
    finally:
        _selected.pop()


def resolve(backend: str | None, device: torch.device, *, implemented: tuple = BACKEND_NAMES,
            op: str = "this op", explicit_only: tuple = ()) -> str:
    """The backend a call of `op` on `device` runs on: the requested one (argument, context, then
    environment) or the fastest present that has a kernel for `op`; raises ValueError if the
    requested one cannot run it. A context or environment choice that `op` lacks a kernel for
    falls back to the automatic choice; an explicit argument does not. Backends in
    `explicit_only` (kernels not yet validated on hardware) are never the automatic choice."""
    requested = backend
    if requested is None and _selected:
        requested = _selected[-1]
    if requested is None:
        requested = _env_backend
    if requested is not None and backend is None and requested not in implemented:
        requested = None
    usable = [name for name in available_on(device) if name in implemented]
    if requested is None:
        return next(name for name in usable if name not in explicit_only)
    _check_name(requested, "backend")
    if requested not in implemented:
        raise ValueError(f"{op} has no {requested!r} kernel yet; it has {list(implemented)}")
    if requested not in usable:
        raise ValueError(f"backend {requested!r} cannot run on {device.type} tensors here; "
                         f"available for {device.type}: {usable}")
    return requested
