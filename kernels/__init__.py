"""Triton kernels and their launchers, one module per op family (shipped as latentops.kernels)."""

from . import compressed_linear, graph, nearest_centroid, soft_quantize

__all__ = ["compressed_linear", "graph", "nearest_centroid", "soft_quantize"]
