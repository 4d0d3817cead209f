"""Launchers of the nearest-centroid kernels in latentops._C (see ops/nearest_centroid.py for the
stage's contract: z (N, D) and codebook (K, D) contiguous, one dtype, N ≥ 1)."""

from __future__ import annotations

import torch

from latentops.kernel_enums import DType
from latentops.native import library


def _outputs(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = z.shape[0]
    return z.new_empty(n, dtype=torch.int64), z.new_empty(n, dtype=torch.float32)


def nearest_centroid_forward_cpu(z: torch.Tensor, codebook: torch.Tensor, accuracy: str):
    """Always exact (fp32 FMA): `accuracy` has nothing to trade here."""
    z, codebook = z.float().contiguous(), codebook.float().contiguous()
    indices, sq_dist = _outputs(z)
    n, d = z.shape
    library.nearest_centroid_cpu(z.data_ptr(), codebook.data_ptr(), n, codebook.shape[0], d,
                                 indices.data_ptr(), sq_dist.data_ptr())
    return indices, sq_dist


def nearest_centroid_forward_cuda(z: torch.Tensor, codebook: torch.Tensor, accuracy: str):
    indices, sq_dist = _outputs(z)
    (n, d), k = z.shape, codebook.shape[0]
    with torch.cuda.device(z.device):
        workspace = torch.empty(library.nearest_centroid_cuda_workspace_bytes(n, k, d),
                                dtype=torch.uint8, device=z.device)
        library.nearest_centroid_cuda(z.data_ptr(), codebook.data_ptr(), n, k, d, DType.of(z.dtype),
                                      accuracy == "exact", indices.data_ptr(), sq_dist.data_ptr(),
                                      workspace.data_ptr(), torch.cuda.current_stream(z.device).cuda_stream)
    return indices, sq_dist
