"""Launchers of the compiled kernels (latentops._C), one module per op family: they allocate the
outputs, pass raw addresses, sizes, kernel enums and the CUDA stream, and return tensors. The
extension does not link libtorch (see DESIGN.md), so this is where tensors become pointers.

`library` is the loaded extension, or None (with one warning) where it is missing or broken; the
ops then fall back to the other backends."""

from __future__ import annotations

from types import ModuleType

# Before the extension: torch loads libgomp.so.1, which latentops._C needs and the wheels do not ship.
import torch  # noqa: F401

from latentops._optional import import_optional

library: ModuleType | None = import_optional(
    "latentops._C", "the compiled extension is", "the cpu and cuda backends are off"
)
