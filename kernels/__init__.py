"""Triton kernels and their launchers, one module per op family (shipped as latentops.kernels)."""

from . import nearest_centroid

__all__ = ["nearest_centroid"]
