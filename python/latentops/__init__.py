"""latentops: fast latent-space regularizers and weight compression for PyTorch.

Every op has a hand-written CUDA kernel, a Triton kernel, a C++ CPU kernel and a pure-torch
reference, registered as torch custom ops (torch.compile and autograd work through them).
"""

import importlib.metadata

from latentops import codecs, nn, robustness
from latentops._backend import BACKEND_NAMES, backends, use_backend
from latentops.kmeans import KMeansResult, kmeans
from latentops.ops import (
    compressed_linear,
    decompress,
    graph_smoothness,
    laplacian,
    nearest_centroid,
    normalize_graph,
    similarity_graph,
    soft_quantize,
)

try:  # one version source: the git tag, written into the package metadata at build time
    __version__ = importlib.metadata.version("latentops")
except importlib.metadata.PackageNotFoundError:  # sources on sys.path, not installed
    __version__ = "0+unknown"

__all__ = [
    "BACKEND_NAMES",
    "KMeansResult",
    "backends",
    "codecs",
    "compressed_linear",
    "decompress",
    "graph_smoothness",
    "kmeans",
    "laplacian",
    "nearest_centroid",
    "nn",
    "normalize_graph",
    "robustness",
    "similarity_graph",
    "soft_quantize",
    "use_backend",
]
