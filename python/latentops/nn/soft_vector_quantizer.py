"""SoftVectorQuantizer: the soft-VQ bottleneck of Wu & Flierl, "Vector Quantization-Based
Regularization for Autoencoders" (AAAI 2020), on latentops.soft_quantize."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from latentops.ops import nearest_centroid, soft_quantize
from latentops.ops.checks import ACCURACIES, check_bool, check_choice, check_int, check_real

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
        straight_through: the decoder gets z + sg(ẑ − z) (as the authors' code does: ẑ in value,
            exactly, with the identity gradient to z) instead of ẑ with its full gradient.
        accuracy: "exact" or "fast" (tf32 tensor cores on GPUs), as for latentops.soft_quantize.

    forward(z, precision=None, hard=False, log_prior=None) -> SoftVQOutput(quantized, loss, perplexity):
        precision: optional tensor from the encoder (a per-sample precision head) of shape (N, 1) /
            (..., 1) or (N, K) / (..., K), overriding the module's. log_prior: optional (K,) or
            (N, K) / (..., K) tensor b added to the logits (Wu & Flierl's code: −½·log s_nk, the
            1/√s factor of their posterior); see latentops.soft_quantize. hard=True in eval mode returns
            the nearest codeword instead of the posterior mean. The perplexity is estimated from the
            posteriors of at most 4096 of the batch's vectors, without an N×K matrix.

    Non-finite inputs: a row of z with a NaN or ±inf (or a non-finite per-sample precision) has
    no posterior: its quantized row is NaN (hard=True included, where nearest_centroid alone
    would give it codeword 0), the other rows are unaffected, and the loss is NaN, so a
    finite-loss check (or a GradScaler) skips the step. The module has no state that a forward
    updates, so nothing else can be poisoned; the perplexity leaves such rows out.
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
        self.dim = check_int("dim", dim)
        self.codebook_size = check_int("codebook_size", codebook_size)
        self.noise_std = check_real("noise_std", noise_std, minimum=0.0)
        precision = check_real("precision", precision, minimum=0.0, open_minimum=True)
        # s is kept as log s in float32 and exponentiated there: it must come back finite and > 0.
        log_precision = torch.tensor(math.log(precision))
        if not 0.0 < float(log_precision.exp()) < math.inf:
            raise ValueError(
                f"precision must lie within float32's range (s is kept as log s in float32), got {precision!r}"
            )
        self.beta = check_real("beta", beta, minimum=0.0)
        learn_precision = check_bool("learn_precision", learn_precision)
        self.straight_through = check_bool("straight_through", straight_through)
        check_choice("accuracy", accuracy, ACCURACIES)
        self.accuracy = accuracy
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        if learn_precision:
            self.log_precision = nn.Parameter(log_precision)
        else:
            self.register_buffer("log_precision", log_precision)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, noise_std={self.noise_std}, "
            f"beta={self.beta}, straight_through={self.straight_through}, accuracy={self.accuracy!r}"
        )

    def forward(
        self,
        z: torch.Tensor,
        precision: torch.Tensor | None = None,
        hard: bool = False,
        log_prior: torch.Tensor | None = None,
    ) -> SoftVQOutput:
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
            z_hat = soft_quantize(noisy, self.codebook, _finite_or_one(s), log_prior, accuracy=self.accuracy)
        # A row without a posterior is NaN whatever the backend makes of it (nearest_centroid
        # gives it index 0; a kernel may return a codeword): never a value that looks valid.
        z_hat = torch.where(_finite_rows(z, None if hard and not self.training else s), z_hat, float("nan"))
        loss = (z_hat.float() - z.detach().float()).square().mean() + self.beta * (
            z_hat.detach().float() - z.float()
        ).square().mean()
        # ẑ + (z − sg(z)) rather than z + sg(ẑ − z): the value is ẑ exactly, the gradient to z the
        # identity.
        quantized = z_hat.detach() + (z - z.detach()) if self.straight_through else z_hat
        return SoftVQOutput(quantized, loss, self._perplexity(z, s, log_prior))

    @torch.no_grad()
    def _perplexity(self, z: torch.Tensor, s, log_prior: torch.Tensor | None = None) -> torch.Tensor:
        flat = z.reshape(-1, self.dim)
        n = flat.shape[0]
        if n == 0:
            return torch.ones((), device=z.device)
        rows = torch.arange(0, n, max(1, n // _PERPLEXITY_ROWS), device=z.device)[:_PERPLEXITY_ROWS]
        per_row = _per_row(s, z)
        if per_row is not None:  # a per-sample precision: the chosen rows' own
            s = per_row[rows]
        if log_prior is not None and log_prior.numel() > self.codebook_size:  # per vector: the chosen rows' own
            log_prior = log_prior.reshape(-1, self.codebook_size)[rows]
        _, probs = soft_quantize(
            flat[rows].float(),
            self.codebook.float(),
            _finite_or_one(s),
            None if log_prior is None else log_prior.float(),
            return_probs=True,
        )
        # Rows without a posterior (a NaN/inf in z or in their precision) are left out, whatever
        # a kernel made of them.
        usable = torch.isfinite(probs).all(1, keepdim=True) & _finite_rows(flat[rows], s)
        probs = torch.where(usable, probs.double(), 0.0)
        usage = probs.sum(0) / usable.sum().clamp_min(1)
        return torch.exp(-(usage * usage.clamp_min(1e-10).log()).sum()).float()


def _per_row(s, z: torch.Tensor) -> torch.Tensor | None:
    """A per-sample precision, (N, 1) / (..., 1) or (N, K) / (..., K), as (N, ·) rows; None for a
    float or a shared one ((), (1,), (1, 1), (1, K), (K,)). For a single vector both readings
    give the same rows."""
    if not isinstance(s, torch.Tensor) or s.dim() < 2:
        return None
    n = z.numel() // z.shape[-1]
    if s.shape[:-1] == z.shape[:-1] or (s.dim() == 2 and s.shape[0] == n):
        return s.reshape(n, s.shape[-1])  # not -1: n may be 0
    return None


def _finite_or_one(s):
    """The precision with its non-finite entries set to 1 for soft_quantize, which refuses them:
    the rows they belong to come out NaN through _finite_rows, which reads the original."""
    return s.where(torch.isfinite(s), 1.0) if isinstance(s, torch.Tensor) else s


def _finite_rows(z: torch.Tensor, s) -> torch.Tensor:
    """(..., 1) bool: z's row and its precision (its own row of a per-sample one) finite."""
    finite = torch.isfinite(z).all(-1, keepdim=True)
    if not isinstance(s, torch.Tensor):
        return finite
    per_row = _per_row(s, z)
    if per_row is None:  # shared by every row
        return finite & torch.isfinite(s.detach()).all()
    return finite & torch.isfinite(per_row.detach()).all(1).reshape(finite.shape)
