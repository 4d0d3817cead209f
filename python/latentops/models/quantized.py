"""Autoencoders with a quantized bottleneck: VQ-VAE (latentops.nn.VectorQuantizer) and soft VQ
(Wu & Flierl, AAAI 2020; latentops.nn.SoftVectorQuantizer). Each latent position's `latent`
channels form one vector to quantize."""

from __future__ import annotations

import torch.nn.functional as F

from latentops.models.base import Autoencoder, Losses
from latentops.nn import SoftVectorQuantizer, VectorQuantizer


def _vectors(z):
    return z.permute(0, 2, 3, 1)  # (B, latent, h, w) → (B, h, w, latent)


def _maps(vectors):
    return vectors.permute(0, 3, 1, 2)


class _QuantizedAutoencoder(Autoencoder):
    """Encoder → self.quantizer (a module returning quantized, loss, perplexity) → decoder."""

    quantizer: VectorQuantizer | SoftVectorQuantizer

    def decode(self, z):
        return self.decoder(_maps(self.quantizer(_vectors(z)).quantized))

    def losses(self, x):
        out = self.quantizer(_vectors(self.encode(x)))
        reconstruction = F.mse_loss(self.decoder(_maps(out.quantized)), x)
        return Losses(
            {"autoencoder": reconstruction + out.loss},
            {"mse": reconstruction.detach(), "perplexity": out.perplexity.detach()},
        )


class VQVAE(_QuantizedAutoencoder):
    """VQ-VAE with an EMA codebook, initialized by k-means on the first batch (a random init
    leaves most codes unused: every latent of a fresh encoder lands on a few codewords), dead
    codes replaced from the batch, synchronized across ranks under torch.distributed."""

    def __init__(
        self,
        image_shape,
        depth=16,
        latent=16,
        scales=3,
        *,
        codebook_size: int = 512,
        beta: float = 0.25,
        ema_decay: float | None = 0.99,
        dead_code_threshold: float = 0.01,
        kmeans_init: bool = True,
    ):
        super().__init__(image_shape, depth, latent, scales)
        self.quantizer = VectorQuantizer(
            latent,
            codebook_size,
            beta=beta,
            ema_decay=ema_decay,
            dead_code_threshold=dead_code_threshold,
            kmeans_init=kmeans_init,
        )


class SoftVQAutoencoder(_QuantizedAutoencoder):
    """Soft VQ: the latent is replaced by the posterior mean of the codewords given the noisy
    latent, with a learned precision."""

    def __init__(
        self,
        image_shape,
        depth=16,
        latent=16,
        scales=3,
        *,
        codebook_size: int = 512,
        noise_std: float = 0.1,
        precision: float = 1.0,
        learn_precision: bool = True,
        beta: float = 0.25,
    ):
        super().__init__(image_shape, depth, latent, scales)
        self.quantizer = SoftVectorQuantizer(
            latent, codebook_size, noise_std=noise_std, precision=precision, learn_precision=learn_precision, beta=beta
        )
