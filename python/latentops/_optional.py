"""Importing a part that may be missing or broken: one warning and None, never an import error."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def import_optional(module: str, what: str, otherwise: str) -> ModuleType | None:
    """`module`, or None after a RuntimeWarning "latentops: <what> unavailable (...); <otherwise>"."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # an ImportError, or a broken install raising anything else
        warnings.warn(
            f"latentops: {what} unavailable ({type(exc).__name__}: {exc}); {otherwise}", RuntimeWarning, stacklevel=3
        )
        return None
