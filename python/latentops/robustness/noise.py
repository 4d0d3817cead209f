"""Additive Gaussian noise on images in [0, 1], set by a per-sample SNR or by a fixed σ, and the
achieved SNR of a perturbation."""

from __future__ import annotations

import torch

from latentops.ops.checks import check_bool, check_real, check_tensor
from latentops.robustness._common import check_images, energy, noise_energy, per_sample, resolve_generator


def _achieved_snr_db(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    signal = energy(clean)
    noise = energy(perturbed.to(torch.float64) - clean.to(torch.float64))
    return 10.0 * torch.log10(signal / noise)


def snr_db(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Per-sample achieved SNR 10·log10(‖x‖² / ‖x̃ − x‖²) in dB, shape (N,), float64; +inf for an
    unperturbed sample, -inf for an all-zero clean sample that was perturbed, NaN where both are zero."""
    check_tensor("clean", clean)
    check_tensor("perturbed", perturbed)
    if clean.shape != perturbed.shape:
        raise ValueError(f"perturbed must have clean's shape {tuple(clean.shape)}, got {tuple(perturbed.shape)}")
    if clean.dim() < 1 or clean.shape[0] == 0:
        raise ValueError(f"clean must be a batch (N, ...) with N ≥ 1, got shape {tuple(clean.shape)}")
    if clean.device != perturbed.device:
        raise ValueError(f"clean and perturbed must be on one device, got {clean.device} and {perturbed.device}")
    return _achieved_snr_db(clean, perturbed)


def gaussian_noise(
    x: torch.Tensor,
    snr_db: float | None = None,
    *,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    clamp: bool = False,
) -> torch.Tensor:
    """x + σ·N(0, 1) for a batch of images x (N, ...) in [0, 1]; give exactly one of:

    - snr_db: σ is chosen per sample so that the achieved SNR 10·log10(‖x_i‖² / ‖n_i‖²) equals snr_db
      exactly: the drawn noise of each sample is rescaled to the energy ‖x_i‖² / 10^(snr_db/10) (so
      the SNR holds for small images too, not only in expectation), up to the rounding of x's dtype
      (float16 at a high SNR rounds the noise visibly). An all-zero sample gets no noise.
    - sigma: a fixed standard deviation for every pixel (the Laplacian-networks authors use σ = 0.1 on
      [0, 1] images).

    Draws come from `generator`, or a fresh generator seeded with `seed`, or torch's global generator.
    clamp=True clips the result to [0, 1], after which the SNR is no longer exact (snr_db() tells the
    achieved one). The result has x's dtype and device and carries no gradient.
    """
    check_images("x", x)
    if (snr_db is None) == (sigma is None):
        raise ValueError("give exactly one of snr_db and sigma")
    if snr_db is not None:
        snr_db = check_real("snr_db", snr_db)
    else:
        sigma = check_real("sigma", sigma, minimum=0.0)
    clamp = check_bool("clamp", clamp)
    gen = resolve_generator(generator, seed, x.device)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=compute)
    if snr_db is not None:
        wanted = noise_energy(energy(x), snr_db)
        drawn = energy(noise)
        scale = torch.where(drawn > 0, (wanted / drawn).sqrt(), torch.zeros_like(drawn))
        noise = noise.to(torch.float64) * per_sample(scale, x)
    else:
        noise = noise * sigma
    out = (x.detach().to(noise.dtype) + noise).to(x.dtype)
    return out.clamp_(0.0, 1.0) if clamp else out
