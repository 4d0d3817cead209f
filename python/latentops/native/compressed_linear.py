"""Launchers of the compressed-linear kernels in latentops._C: the decode of an hcsr matrix to dense
and y = x·Wᵀ on the compressed form (contract: csrc/include/latentops/compressed_linear.h; the format:
latentops.codecs.hcsr). The keywords are the fields of CompressedLinearDecodeParams /
CompressedLinearForwardParams with the HcsrMatrix flattened.

Every stage takes the matrix as HcsrMatrix.kernel_args() gives it: words int32 (the uint32 words'
bits), row_bits int64 (rows + 1), row_nnz int32 (rows), gap_lut / value_lut int32 (2**gap_bits and
2**value_bits entries), codebook float32 (k), and ints for the rest. The kernels never read or write
out of bounds on any stream (see the header's safety rule); the table sizes are checked here."""

from __future__ import annotations

import torch

from latentops.native import library

# Above this batch the CUDA launcher decodes W once and multiplies densely: the fused kernel keeps
# 16 batch rows in registers per pass and would decode the stream again for every 16.
CUDA_FUSED_MAX_BATCH = 64


def _matrix(words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits):
    """The keywords of HcsrMatrix, after checking what the kernels trust: dtypes, devices and sizes."""
    device = words.device
    for name, t, dtype in (
        ("words", words, torch.int32),
        ("row_bits", row_bits, torch.int64),
        ("row_nnz", row_nnz, torch.int32),
        ("gap_lut", gap_lut, torch.int32),
        ("value_lut", value_lut, torch.int32),
        ("codebook", codebook, torch.float32),
    ):
        if t.dtype != dtype or t.device != device or not t.is_contiguous() or t.dim() != 1:
            raise ValueError(
                f"{name} must be a contiguous 1-d {dtype} tensor on {device}, got {t.dtype} {tuple(t.shape)} "
                f"on {t.device}"
            )
    rows = row_nnz.numel()
    if row_bits.numel() != rows + 1:
        raise ValueError(f"row_bits must have rows + 1 = {rows + 1} entries, got {row_bits.numel()}")
    for name, bits in (("gap_bits", gap_bits), ("value_bits", value_bits)):
        if not 0 <= bits <= 15:
            raise ValueError(f"{name} must be in [0, 15], got {bits}")
    if gap_lut.numel() != 1 << gap_bits:
        raise ValueError(f"gap_lut must have 2**gap_bits = {1 << gap_bits} entries, got {gap_lut.numel()}")
    if value_lut.numel() != 1 << value_bits:
        raise ValueError(f"value_lut must have 2**value_bits = {1 << value_bits} entries, got {value_lut.numel()}")
    if not 0 <= escape_bits <= 31:
        raise ValueError(f"escape_bits must be in [0, 31], got {escape_bits}")
    if cols < 0:
        raise ValueError(f"cols must be ≥ 0, got {cols}")
    return dict(
        words=words.data_ptr(),
        n_words=words.numel(),
        row_bits=row_bits.data_ptr(),
        row_nnz=row_nnz.data_ptr(),
        gap_lut=gap_lut.data_ptr(),
        value_lut=value_lut.data_ptr(),
        codebook=codebook.data_ptr(),
        rows=rows,
        cols=int(cols),
        k=codebook.numel(),
        gap_bits=int(gap_bits),
        value_bits=int(value_bits),
        escape=int(escape),
        escape_bits=int(escape_bits),
    )


def _x(x: torch.Tensor, cols: int, device: torch.device) -> torch.Tensor:
    if x.dim() != 2 or x.shape[1] != cols or x.shape[0] < 1 or x.device != device:
        raise ValueError(f"x must be (batch ≥ 1, cols={cols}) on {device}, got {tuple(x.shape)} on {x.device}")
    return x.float().contiguous()


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def compressed_linear_decode_cpu(
    words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
):
    matrix = _matrix(
        words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
    )
    dense = torch.empty(matrix["rows"], cols, dtype=torch.float32)
    library.compressed_linear_decode_cpu(**matrix, dense=dense.data_ptr())
    return dense


def compressed_linear_forward_cpu(
    x, words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
):
    matrix = _matrix(
        words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
    )
    x = _x(x, cols, words.device)
    y = torch.empty(x.shape[0], matrix["rows"], dtype=torch.float32)
    library.compressed_linear_forward_cpu(**matrix, x=x.data_ptr(), batch=x.shape[0], y=y.data_ptr())
    return y


def compressed_linear_decode_cuda(
    words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
):
    matrix = _matrix(
        words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
    )
    dense = torch.empty(matrix["rows"], cols, dtype=torch.float32, device=words.device)
    with torch.cuda.device(words.device):
        library.compressed_linear_decode_cuda(**matrix, dense=dense.data_ptr(), stream=_stream(words))
    return dense


def compressed_linear_forward_cuda(
    x, words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits
):
    args = (words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits)
    matrix = _matrix(*args)
    x = _x(x, cols, words.device)
    if x.shape[0] > CUDA_FUSED_MAX_BATCH:
        return torch.nn.functional.linear(x, compressed_linear_decode_cuda(*args))
    y = torch.empty(x.shape[0], matrix["rows"], dtype=torch.float32, device=x.device)
    with torch.cuda.device(x.device):
        library.compressed_linear_forward_cuda(
            **matrix, x=x.data_ptr(), batch=x.shape[0], y=y.data_ptr(), stream=_stream(x)
        )
    return y
