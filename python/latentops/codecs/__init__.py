"""latentops.codecs: weight compression (the fourth op family's host side): magnitude pruning,
weight sharing, Huffman-coded sparse formats and the file that holds a compressed model."""

from latentops.codecs.errors import CorruptedFileError
from latentops.codecs.hcsr import HcsrMatrix, encode_hcsr
from latentops.codecs.matrix import CompressedMatrix

__all__ = ["CompressedMatrix", "CorruptedFileError", "HcsrMatrix", "encode_hcsr"]
