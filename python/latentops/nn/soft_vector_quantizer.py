"""SoftVectorQuantizer: the soft-VQ bottleneck of Wu & Flierl, "Vector Quantization-Based
Regularization for Autoencoders" (AAAI 2020), on latentops.soft_quantize."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from latentops.ops import nearest_centroid, soft_quantize
from latentops.ops.checks import ACCURACIES, check_choice

_PERPLEXITY_ROWS = 4096


class SoftVQOutput(NamedTuple):
    """quantized (..., dim) in z's dtype; loss: float32 scalar to add to the training loss;
    perplexity: exp of the entropy of the mean posterior over codewords (no gradient)."""

    quantized: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor


class SoftVectorQuantizer(nn.Module):
    """Soft vector quantization: z is replaced by the posterior mean of the codewords.

    Args:
        dim: size D of the vectors (z's last dimension).
        codebook_size: number K of codewords (an nn.Parameter, learned by gradient).
        noise_std: std of the Gaussian noise added to z in training mode (the paper's noisy latents).
        precision: s = 1/σ² of the Gaussian likelihood (a float; or pass a tensor to forward).
        learn_precision: learn log s as a parameter.
        beta: weight of the commitment term: loss = mean ‖ẑ − sg(z)‖² + beta · mean ‖sg(ẑ) − z‖².
        straight_through: the decoder gets z + sg(ẑ − z) (as the authors' code does) instead of ẑ
            with its full gradient.
        accuracy: "exact" or "fast" (tf32 tensor cores on GPUs), as for latentops.soft_quantize.

    forward(z, precision=None, hard=False) -> SoftVQOutput(quantized, loss, perplexity):
        precision: optional tensor from the encoder (a per-sample precision head) of shape (N, 1) /
            (..., 1) or (N, K) / (..., K), overriding the module's. hard=True in eval mode returns
            the nearest codeword instead of the posterior mean. The perplexity is estimated from the
            posteriors of at most 4096 of the batch's vectors, without an N×K matrix.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        noise_std: float = 0.0,
        precision: float = 1.0,
        learn_precision: bool = False,
        beta: float = 0.25,
        straight_through: bool = False,
        accuracy: str = "exact",
    ):
        super().__init__()
        for name, value in (("dim", dim), ("codebook_size", codebook_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std!r}")
        if not precision > 0:
            raise ValueError(f"precision must be > 0, got {precision!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {beta!r}")
        self.dim, self.codebook_size = dim, codebook_size
        self.noise_std, self.beta = float(noise_std), float(beta)
        self.straight_through = bool(straight_through)
        check_choice("accuracy", accuracy, ACCURACIES)
        self.accuracy = accuracy
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        log_precision = torch.tensor(math.log(precision))
        if learn_precision:
            self.log_precision = nn.Parameter(log_precision)
        else:
            self.register_buffer("log_precision", log_precision)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, noise_std={self.noise_std}, "
            f"beta={self.beta}, straight_through={self.straight_through}, accuracy={self.accuracy!r}"
        )

    def forward(self, z: torch.Tensor, precision: torch.Tensor | None = None, hard: bool = False) -> SoftVQOutput:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"z must be a float tensor, got {getattr(z, 'dtype', type(z).__name__)}")
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., dim = {self.dim}), got {tuple(z.shape)}")
        s = self.log_precision.exp() if precision is None else precision
        if hard and not self.training:
            indices, _ = nearest_centroid(z, self.codebook.detach())
            z_hat = self.codebook[indices].to(z.dtype)
        else:
            noisy = z
            if self.training and self.noise_std > 0:
                noisy = z + self.noise_std * torch.randn_like(z)
            z_hat = soft_quantize(noisy, self.codebook, s, accuracy=self.accuracy)
        loss = (z_hat.float() - z.detach().float()).square().mean() + self.beta * (
            z_hat.detach().float() - z.float()
        ).square().mean()
        quantized = z + (z_hat - z).detach() if self.straight_through else z_hat
        return SoftVQOutput(quantized, loss, self._perplexity(z, s))

    @torch.no_grad()
    def _perplexity(self, z: torch.Tensor, s) -> torch.Tensor:
        flat = z.reshape(-1, self.dim)
        n = flat.shape[0]
        if n == 0:
            return torch.ones((), device=z.device)
        rows = torch.arange(0, n, max(1, n // _PERPLEXITY_ROWS), device=z.device)[:_PERPLEXITY_ROWS]
        if isinstance(s, torch.Tensor) and s.numel() > 1:  # a per-sample precision: its rows
            s = s.reshape(n, -1)[rows]
        _, probs = soft_quantize(flat[rows].float(), self.codebook.float(), s, return_probs=True)
        usage = probs.mean(0, dtype=torch.float64)
        return torch.exp(-(usage * usage.clamp_min(1e-10).log()).sum()).float()
