"""Launchers of the nearest-centroid kernels in latentops._C (see ops/nearest_centroid.py for the
stage's contract: z (N, D) and codebook (K, D) contiguous, one dtype, N ≥ 1). The keywords are the
fields of NearestCentroidParams in csrc/include/latentops/nearest_centroid.h."""

from __future__ import annotations

import torch

from latentops.kernel_enums import Accuracy, DType
from latentops.native import library


def _launch(launch, z: torch.Tensor, codebook: torch.Tensor, accuracy: str, **device_args):
    (n, d), k = z.shape, codebook.shape[0]
    indices, sq_dist = z.new_empty(n, dtype=torch.int64), z.new_empty(n, dtype=torch.float32)
    launch(
        z=z.data_ptr(),
        codebook=codebook.data_ptr(),
        n=n,
        k=k,
        d=d,
        dtype=DType.of(z.dtype),
        accuracy=Accuracy[accuracy.upper()],
        indices=indices.data_ptr(),
        sq_dist=sq_dist.data_ptr(),
        **device_args,
    )
    return indices, sq_dist


def nearest_centroid_forward_cpu(z: torch.Tensor, codebook: torch.Tensor, accuracy: str):
    """Always exact (fp32 FMA): `accuracy` has nothing to trade here."""
    z, codebook = z.float().contiguous(), codebook.float().contiguous()
    return _launch(library.nearest_centroid_cpu, z, codebook, accuracy)


def nearest_centroid_forward_cuda(z: torch.Tensor, codebook: torch.Tensor, accuracy: str):
    (n, d), k = z.shape, codebook.shape[0]
    with torch.cuda.device(z.device):
        workspace = torch.empty(
            library.nearest_centroid_cuda_workspace_bytes(n=n, k=k, d=d, accuracy=Accuracy[accuracy.upper()]),
            dtype=torch.uint8,
            device=z.device,
        )
        return _launch(
            library.nearest_centroid_cuda,
            z,
            codebook,
            accuracy,
            workspace=workspace.data_ptr(),
            stream=torch.cuda.current_stream(z.device).cuda_stream,
        )
