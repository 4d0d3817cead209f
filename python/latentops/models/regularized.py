"""Autoencoders regularized without an adversary: dropout on the latent, denoising, VAE (ours and
ACAI's)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.base import Autoencoder, Losses


class DropoutAutoencoder(Autoencoder):
    """Dropout on the latent code in training (ACAI's dropout baseline)."""

    def __init__(self, image_shape, depth=16, latent=16, scales=3, *, dropout: float = 0.5):
        super().__init__(image_shape, depth, latent, scales)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)

    def losses(self, x):
        z = F.dropout(self.encode(x), self.dropout, training=self.training)
        reconstruction = F.mse_loss(self.decode(z), x)
        return Losses({"autoencoder": reconstruction}, {"mse": reconstruction.detach()})


class DenoisingAutoencoder(Autoencoder):
    """Reconstructs x from x + N(0, noise_std²) (ACAI's denoising baseline uses noise_std = 1)."""

    def __init__(self, image_shape, depth=16, latent=16, scales=3, *, noise_std: float = 1.0):
        super().__init__(image_shape, depth, latent, scales)
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std!r}")
        self.noise_std = float(noise_std)

    def losses(self, x):
        noisy = x + self.noise_std * torch.randn_like(x) if self.training else x
        reconstruction = F.mse_loss(self.decode(self.encode(noisy)), x)
        return Losses({"autoencoder": reconstruction}, {"mse": reconstruction.detach()})


class VAE(Autoencoder):
    """Gaussian posterior with a standard normal prior. The encoder outputs the mean and log
    variance; loss = MSE + beta · KL / (pixels per image), both per pixel, which is ACAI's
    per-image sum of squared errors + beta · KL divided by a constant."""

    def __init__(self, image_shape, depth=16, latent=16, scales=3, *, beta: float = 1.0):
        super().__init__(image_shape, depth, latent, scales)
        if not beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {beta!r}")
        self.beta = float(beta)

    def encoder_channels(self):
        return 2 * self.latent

    def posterior(self, x):
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def encode(self, x):
        return self.posterior(x)[0]

    def losses(self, x):
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        reconstruction = F.mse_loss(self.decode(z), x)
        kl = 0.5 * (mean.square() + log_var.exp() - log_var - 1).flatten(1).sum(1).mean()
        kl_per_pixel = kl / x[0].numel()
        loss = reconstruction + self.beta * kl_per_pixel
        return Losses({"autoencoder": loss}, {"mse": reconstruction.detach(), "kl": kl.detach()})


class AcaiVAE(Autoencoder):
    """The VAE of ACAI's code (vae.py): the encoder's map, flattened, through two dense layers to
    the posterior's mean and log variance (as many numbers as the map); a Bernoulli likelihood of
    the image rescaled to [0, 1] on the decoder's output as logits, images decoded as
    2·sigmoid(logits) − 1; loss −ELBO = BCE + beta·KL, each summed over an image and averaged over
    the batch. Its code (what is interpolated) is a posterior sample, in evaluation too; its
    classifier reads the map before the dense layers (probe_latent), as ACAI's does."""

    def __init__(self, image_shape, depth=16, latent=16, scales=3, *, beta: float = 1.0):
        super().__init__(image_shape, depth, latent, scales)
        if not beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {beta!r}")
        self.beta = float(beta)
        size = math.prod(self.latent_shape)
        self.to_mean = nn.Linear(size, size)
        self.to_log_var = nn.Linear(size, size)

    def posterior(self, x):
        features = self.encoder(x).flatten(1)
        return self.to_mean(features), self.to_log_var(features)

    def _sample(self, mean, log_var):
        return (mean + torch.randn_like(mean) * (0.5 * log_var).exp()).reshape(-1, *self.latent_shape)

    def encode(self, x):
        return self._sample(*self.posterior(x))

    def probe_latent(self, x):
        return self.encoder(x)

    def decode(self, z):
        return 2.0 * torch.sigmoid(self.decoder(z)) - 1.0

    def losses(self, x):
        mean, log_var = self.posterior(x)
        logits = self.decoder(self._sample(mean, log_var))
        batch = x.shape[0]
        bce = F.binary_cross_entropy_with_logits(logits, (x + 1.0) / 2.0, reduction="sum") / batch
        kl = 0.5 * (mean.square() + log_var.exp() - log_var - 1.0).sum() / batch
        mse = F.mse_loss(2.0 * torch.sigmoid(logits) - 1.0, x)
        return Losses(
            {"autoencoder": bce + self.beta * kl}, {"mse": mse.detach(), "bce": bce.detach(), "kl": kl.detach()}
        )
