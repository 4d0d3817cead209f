"""latentops.nn: modules built on the latentops ops."""

from latentops.nn.compressed import CompressedConv2d, CompressedLinear
from latentops.nn.graph_losses import GeometryTargetLoss, GraphDistillationLoss, SmoothnessVariationLoss
from latentops.nn.shared_weight import SharedWeightConv2d, SharedWeightLinear
from latentops.nn.soft_vector_quantizer import SoftVectorQuantizer, SoftVQOutput
from latentops.nn.vector_quantizer import VectorQuantizer, VQOutput

__all__ = [
    "CompressedConv2d",
    "CompressedLinear",
    "GeometryTargetLoss",
    "GraphDistillationLoss",
    "SharedWeightConv2d",
    "SharedWeightLinear",
    "SmoothnessVariationLoss",
    "SoftVQOutput",
    "SoftVectorQuantizer",
    "VQOutput",
    "VectorQuantizer",
]
