"""Triton kernels and their launchers, one module per op family (shipped as latentops.kernels)."""

from . import graph, nearest_centroid, soft_quantize

__all__ = ["graph", "nearest_centroid", "soft_quantize"]
