"""The public ops: validation, custom-op registration, autograd and dispatch to the backends."""

from latentops.ops.nearest_centroid import nearest_centroid

__all__ = ["nearest_centroid"]
