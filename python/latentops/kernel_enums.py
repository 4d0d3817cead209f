"""The kernel enums, mirrored from csrc/include/latentops/enums.h (the one header that defines
them; tests/test_kernel_enums.py checks that the two agree). Values cross into latentops._C and
the Triton kernels as plain ints."""

from __future__ import annotations

import enum

import torch


class DType(enum.IntEnum):
    """Element type of a kernel's operands."""

    FLOAT32 = 0
    FLOAT16 = 1
    BFLOAT16 = 2

    @classmethod
    def of(cls, dtype: torch.dtype) -> DType:
        return {torch.float32: cls.FLOAT32, torch.float16: cls.FLOAT16, torch.bfloat16: cls.BFLOAT16}[dtype]


class Accuracy(enum.IntEnum):
    """EXACT: fp32-accurate products (3xTF32 on tensor cores, FMA on the CPU); FAST: one
    tf32/fp16/bf16 tensor-core product."""

    EXACT = 0
    FAST = 1


class GraphMetric(enum.IntEnum):
    COSINE = 0
    GAUSSIAN = 1


class PrecisionLayout(enum.IntEnum):
    """Layout of soft quantization's precision s: (1,), (N,), (K,) or (N, K)."""

    SCALAR = 0
    PER_ROW = 1
    PER_CENTROID = 2
    FULL = 3
