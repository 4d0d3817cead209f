"""The public ops: validation, custom-op registration, autograd and dispatch to the backends."""

from latentops.ops.nearest_centroid import nearest_centroid
from latentops.ops.soft_quantize import soft_quantize

__all__ = ["nearest_centroid", "soft_quantize"]
