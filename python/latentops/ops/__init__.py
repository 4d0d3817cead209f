"""The public ops: validation, custom-op registration, autograd and dispatch to the backends."""

from latentops.ops.graph import graph_smoothness, laplacian, similarity_graph
from latentops.ops.nearest_centroid import nearest_centroid
from latentops.ops.soft_quantize import soft_quantize

__all__ = ["graph_smoothness", "laplacian", "nearest_centroid", "similarity_graph", "soft_quantize"]
