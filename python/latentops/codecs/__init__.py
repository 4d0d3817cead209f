"""latentops.codecs: weight compression, the host side of the fourth op family (the kernels are
latentops.compressed_linear / latentops.decompress): magnitude pruning, weight sharing, Huffman-coded
sparse formats, and the file that holds a compressed model.

    mask = prune_magnitude(w, 0.95)                       # keep the 5% largest |w|
    shared = quantize(w, 32, method="cws", mask=mask)     # codes, float32 codebook, mask
    matrix = encode(shared, format="hcsr")                # .decode(), .nbytes, .psi
    save_file({"fc1.weight": matrix}, "model.lops")       # safetensors, checksummed
"""

from latentops.codecs.container import load_file, save_file
from latentops.codecs.csc import CscMatrix, csc_paper_psi
from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.formats import FORMATS, encode
from latentops.codecs.ham import HamMatrix, ham_paper_psi
from latentops.codecs.hcsr import HcsrMatrix, encode_hcsr
from latentops.codecs.matrix import CompressedMatrix
from latentops.codecs.pruning import apply_pruning_mask, prune_magnitude, prune_magnitude_global
from latentops.codecs.quantizers import METHODS, prune_and_quantize, quantize
from latentops.codecs.sham import ShamMatrix, sham_paper_psi
from latentops.codecs.shared_weights import SharedWeights

__all__ = [
    "FORMATS",
    "METHODS",
    "CompressedMatrix",
    "CorruptedFileError",
    "CscMatrix",
    "HamMatrix",
    "HcsrMatrix",
    "ShamMatrix",
    "SharedWeights",
    "apply_pruning_mask",
    "csc_paper_psi",
    "encode",
    "encode_hcsr",
    "ham_paper_psi",
    "load_file",
    "prune_and_quantize",
    "prune_magnitude",
    "prune_magnitude_global",
    "quantize",
    "save_file",
    "sham_paper_psi",
]
