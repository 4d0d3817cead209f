"""Launchers of the compressed_linear kernels in latentops._C (the stages' contracts are in
ops/compressed_linear.py; the keywords are the fields of CompressedLinearDecodeParams /
CompressedLinearForwardParams in csrc/include/latentops/compressed_linear.h)."""

from __future__ import annotations

import torch

from latentops.native import library


def _matrix(words, row_bits, row_nnz, gap_lut, value_lut, codebook, cols, gap_bits, value_bits, escape, escape_bits):
    """The keywords of HcsrMatrix."""
    return dict(
        words=words.data_ptr(),
        n_words=words.numel(),
        row_bits=row_bits.data_ptr(),
        row_nnz=row_nnz.data_ptr(),
        gap_lut=gap_lut.data_ptr(),
        value_lut=value_lut.data_ptr(),
        codebook=codebook.data_ptr(),
        rows=row_nnz.numel(),
        cols=cols,
        k=codebook.numel(),
        gap_bits=gap_bits,
        value_bits=value_bits,
        escape=escape,
        escape_bits=escape_bits,
    )


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def compressed_linear_decode_cpu(*matrix):
    dense = torch.empty(matrix[2].numel(), matrix[6], dtype=torch.float32)
    library.compressed_linear_decode_cpu(**_matrix(*matrix), dense=dense.data_ptr())
    return dense


def compressed_linear_forward_cpu(x, *matrix):
    x = x.float().contiguous()
    y = torch.empty(x.shape[0], matrix[2].numel(), dtype=torch.float32)
    library.compressed_linear_forward_cpu(**_matrix(*matrix), x=x.data_ptr(), batch=x.shape[0], y=y.data_ptr())
    return y


def compressed_linear_decode_cuda(*matrix):
    words = matrix[0]
    dense = torch.empty(matrix[2].numel(), matrix[6], dtype=torch.float32, device=words.device)
    with torch.cuda.device(words.device):
        library.compressed_linear_decode_cuda(**_matrix(*matrix), dense=dense.data_ptr(), stream=_stream(words))
    return dense


def compressed_linear_forward_cuda(x, *matrix):
    x = x.float().contiguous()
    y = torch.empty(x.shape[0], matrix[2].numel(), dtype=torch.float32, device=x.device)
    with torch.cuda.device(x.device):
        library.compressed_linear_forward_cuda(
            **_matrix(*matrix), x=x.data_ptr(), batch=x.shape[0], y=y.data_ptr(), stream=_stream(x)
        )
    return y
