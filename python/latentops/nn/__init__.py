"""latentops.nn: modules built on the latentops ops."""

from latentops.nn.vector_quantizer import VectorQuantizer, VQOutput

__all__ = ["VectorQuantizer", "VQOutput"]
