"""Triton kernels and their launchers, one module per op family (shipped as latentops.kernels)."""

from . import nearest_centroid, soft_quantize

__all__ = ["nearest_centroid", "soft_quantize"]
