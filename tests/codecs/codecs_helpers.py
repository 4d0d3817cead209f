"""A stand-in SharedWeights (codes, codebook, mask) and its dense matrix."""

import types

import torch


def shared(codes, codebook, mask):
    return types.SimpleNamespace(codes=codes, codebook=codebook, mask=mask)


def dense(s) -> torch.Tensor:
    """W = codebook[codes] where kept, +0.0 where pruned (SharedWeights.dense())."""
    return torch.where(s.mask, s.codebook[s.codes], torch.zeros((), dtype=torch.float32))


def random_shared(gen, shape, k, density, laplace=False):
    if laplace:  # Laplace-like weights, pruned by magnitude, k uniform levels over the kept ones
        w = _laplace(gen, shape)
        mask = w.abs() >= w.abs().flatten().quantile(1 - density) if w.numel() else torch.zeros(shape, dtype=torch.bool)
        kept = w[mask] if mask.any() else torch.zeros(1)
        codebook = torch.linspace(float(kept.min()), float(kept.max()), k)
        codes = (
            (codebook[None] - w.reshape(-1, 1)).abs().argmin(1).reshape(shape)
            if k > 1
            else torch.zeros(shape, dtype=torch.int64)
        )
        return shared(codes, codebook, mask)
    codes = torch.randint(0, k, shape, generator=gen)
    codebook = torch.randn(k, generator=gen).sort().values
    mask = torch.rand(shape, generator=gen) < density
    return shared(codes, codebook, mask)


def _laplace(gen, shape):
    u = torch.rand(shape, generator=gen) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs().clamp(max=0.4999999))
