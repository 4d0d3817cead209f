"""latentops.nn: modules built on the latentops ops."""

from latentops.nn.soft_vector_quantizer import SoftVectorQuantizer, SoftVQOutput
from latentops.nn.vector_quantizer import VectorQuantizer, VQOutput

__all__ = ["SoftVQOutput", "SoftVectorQuantizer", "VQOutput", "VectorQuantizer"]
