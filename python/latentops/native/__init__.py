"""Launchers of the compiled kernels (latentops._C), one module per op family: they allocate the
outputs, pass raw addresses, sizes, kernel enums and the CUDA stream, and return tensors. The
extension does not link libtorch (see DESIGN.md), so this is where tensors become pointers.

`library` is the loaded extension, or None (with one warning) where it is missing or broken; the
ops then fall back to the other backends."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("latentops._C")
    except Exception as exc:  # an ImportError, or a broken install raising anything else
        warnings.warn(
            f"latentops: the compiled extension is unavailable ({type(exc).__name__}: {exc}); "
            "the cpu and cuda backends are off",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


library: ModuleType | None = _load()
