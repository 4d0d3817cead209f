"""The public ops, one module per op family: validation, the family's stages as custom ops
(registration.Stage) and its table of backends (_backend.Kernels). ADDING_A_FAMILY.md is the recipe."""

from latentops.ops.compressed_linear import compressed_linear, decompress
from latentops.ops.graph import graph_smoothness, laplacian, normalize_graph, similarity_graph
from latentops.ops.nearest_centroid import nearest_centroid
from latentops.ops.soft_quantize import soft_quantize

__all__ = [
    "compressed_linear",
    "decompress",
    "graph_smoothness",
    "laplacian",
    "nearest_centroid",
    "normalize_graph",
    "similarity_graph",
    "soft_quantize",
]
