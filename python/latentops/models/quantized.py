"""Autoencoders with a quantized bottleneck: VQ-VAE (latentops.nn.VectorQuantizer) and soft VQ
(Wu & Flierl, AAAI 2020; latentops.nn.SoftVectorQuantizer). Each latent position's `latent`
channels form one vector to quantize."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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


class AcaiVQVAE(Autoencoder):
    """The VQ-VAE of ACAI's code (vqvae.py with lib/discretization.py): the encoder's map (ACAI:
    4×4×16 = 256 numbers) goes through a dense layer to num_latents vectors of that size, each
    replaced by the nearest of codebook_size codewords (ACAI: 10 vectors, 2^14 codewords) updated
    by EMA (decay 0.999, Laplace smoothing 1e-5) with commitment weight beta (10); the quantized
    vectors, straight-through, pass dense(relu(·), 512) and dense(relu(·), map size) back to the
    map the decoder takes. ACAI's classifier reads that last dense output (probe_latent); the
    pipeline interpolates the encoder's map, decoded through the whole bottleneck, as ACAI does.
    Codebook initialized at random (no k-means), no dead-code replacement, as ACAI's."""

    def __init__(
        self,
        image_shape,
        depth=16,
        latent=16,
        scales=3,
        *,
        num_latents: int = 10,
        codebook_size: int = 16384,
        beta: float = 10.0,
        ema_decay: float = 0.999,
        hidden: int = 512,
    ):
        super().__init__(image_shape, depth, latent, scales)
        size = math.prod(self.latent_shape)
        if not (isinstance(num_latents, int) and num_latents >= 1):
            raise ValueError(f"num_latents must be an int ≥ 1, got {num_latents!r}")
        self.num_latents, self.size = num_latents, size
        self.to_latents = nn.Linear(size, size * num_latents)
        self.quantizer = VectorQuantizer(
            size, codebook_size, beta=beta, ema_decay=ema_decay, eps=1e-5, dead_code_threshold=0.0, kmeans_init=False
        )
        self.from_latents = nn.Sequential(
            nn.ReLU(), nn.Linear(size * num_latents, hidden), nn.ReLU(), nn.Linear(hidden, size)
        )

    def _bottleneck(self, maps):
        vectors = self.to_latents(maps.flatten(1)).reshape(-1, self.num_latents, self.size)
        out = self.quantizer(vectors)
        return self.from_latents(out.quantized.flatten(1)).reshape(maps.shape), out

    def decode(self, z):
        return self.decoder(self._bottleneck(z)[0])

    def probe_latent(self, x):
        return self._bottleneck(self.encode(x))[0]

    def losses(self, x):
        dense, out = self._bottleneck(self.encode(x))
        reconstruction = F.mse_loss(self.decoder(dense), x)
        return Losses(
            {"autoencoder": reconstruction + out.loss},
            {"mse": reconstruction.detach(), "perplexity": out.perplexity.detach()},
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


class PaperSoftVQAutoencoder(Autoencoder):
    """Soft VQ as Wu & Flierl's published code builds it (AlbertOh90/Soft-VQ-VAE, the MNIST
    notebook), on this zoo's convolutional backbone: one global latent vector z = dense(features)
    of code_dim numbers, and a precision head h = dense(features) with one output per codeword,
    s_k = exp(−2·h_k). The posterior is p_k ∝ exp(−½·s_k·‖z − c_k‖²)/√s_k (the factor enters as
    the log prior −½·log s_k = h_k), ẑ = Σ_k p_k c_k, and the decoder gets z + sg(ẑ − z)
    (straight_through) through a dense layer back to the latent map. Loss: MSE/Var(x) +
    q_weight·(mean ‖ẑ − sg(z)‖² + commitment·mean ‖sg(ẑ) − z‖²): the MNIST notebook's 3 and 2.5
    (SVHN's: 2 and 7.5). Var(x) is data_variance, or the variance of the first training batch
    (kept in the state). Noise N(0, noise_std²) on z before quantizing is off, as in their code
    (where the line adding σ = 0.01 is commented out).

    The latent the pipeline interpolates is (z, h): decoding needs the precision too. Downstream
    evaluation reads z alone (probe_latent), as theirs does."""

    def __init__(
        self,
        image_shape,
        depth=16,
        latent=16,
        scales=3,
        *,
        code_dim: int = 64,
        codebook_size: int = 128,
        q_weight: float = 3.0,
        commitment: float = 2.5,
        noise_std: float = 0.0,
        straight_through: bool = True,
        data_variance: float | None = None,
    ):
        super().__init__(image_shape, depth, latent, scales)
        if not q_weight >= 0:
            raise ValueError(f"q_weight must be ≥ 0, got {q_weight!r}")
        if data_variance is not None and not 0 < data_variance < math.inf:
            raise ValueError(f"data_variance must be > 0 and finite, got {data_variance!r}")
        self.code_dim, self.q_weight = int(code_dim), float(q_weight)
        size = math.prod(self.latent_shape)
        self.to_code = nn.Linear(size, code_dim)
        self.precision_head = nn.Linear(size, codebook_size)
        self.from_code = nn.Linear(code_dim, size)
        self.quantizer = SoftVectorQuantizer(
            code_dim, codebook_size, noise_std=noise_std, beta=commitment, straight_through=straight_through
        )
        with torch.no_grad():  # their uniform unit-scaling initializer of the (D, K) codebook
            bound = math.sqrt(3.0 / code_dim)
            self.quantizer.codebook.uniform_(-bound, bound)
        self.register_buffer("data_variance", torch.tensor(math.nan if data_variance is None else data_variance))

    def encode(self, x):
        features = self.encoder(x).flatten(1)
        return torch.cat([self.to_code(features), self.precision_head(features)], dim=1)

    def probe_latent(self, x):
        return self.to_code(self.encoder(x).flatten(1))

    def _quantize(self, code):
        z, h = code.split([self.code_dim, code.shape[1] - self.code_dim], dim=1)
        return self.quantizer(z, precision=torch.exp(-2.0 * h), log_prior=h)

    def _decode_quantized(self, quantized):
        return self.decoder(self.from_code(quantized).reshape(-1, *self.latent_shape))

    def decode(self, code):
        return self._decode_quantized(self._quantize(code).quantized)

    def losses(self, x):
        if torch.isnan(self.data_variance):
            self.data_variance.fill_(float(x.detach().double().var()))
        out = self._quantize(self.encode(x))
        mse = F.mse_loss(self._decode_quantized(out.quantized), x)
        return Losses(
            {"autoencoder": mse / self.data_variance + self.q_weight * out.loss},
            {"mse": mse.detach(), "perplexity": out.perplexity.detach()},
        )
