"""Autoencoders with an adversary: AAE (a discriminator pushes the latents towards a Gaussian
prior) and ACAI (a critic predicts the mixing coefficient of decoded interpolants)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.backbone import Critic
from latentops.models.base import Autoencoder, Losses


class AdversarialAutoencoder(Autoencoder):
    """AAE (Makhzani et al.): an MLP discriminator on the flattened latent tells N(0, I) samples
    from encodings; the encoder is trained to fool it (non-saturating loss).

    adv_weight weighs the fooling loss (a per-image log-loss) against the reconstruction error
    summed over the image's pixels, the balance of Makhzani et al.; the reconstruction term itself
    is the per-pixel mean, so the fooling term enters divided by the pixel count. (Weighted 1:1
    with the per-pixel mean instead, the adversary wins from the start: on lines the decoder never
    leaves the mean image, test MSE 0.11 after 1,500 steps against 0.007.) The discriminator has
    two hidden layers of disc_hidden units, ACAI's 100 (aae.py: disc_layer_sizes='100,100')."""

    def __init__(self, image_shape, depth=16, latent=16, scales=3, *, adv_weight: float = 1.0, disc_hidden: int = 100):
        super().__init__(image_shape, depth, latent, scales)
        if not adv_weight >= 0:
            raise ValueError(f"adv_weight must be ≥ 0, got {adv_weight!r}")
        self.adv_weight = float(adv_weight)
        self.pixels = image_shape[0] * image_shape[1] * image_shape[2]
        size = math.prod(self.latent_shape)
        self.discriminator = nn.Sequential(
            nn.Linear(size, disc_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(disc_hidden, disc_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(disc_hidden, 1),
        )

    def param_groups(self):
        disc = set(map(id, self.discriminator.parameters()))
        return {
            "autoencoder": [p for p in self.parameters() if id(p) not in disc],
            "discriminator": list(self.discriminator.parameters()),
        }

    def losses(self, x):
        z = self.encode(x)
        reconstruction = F.mse_loss(self.decode(z), x)
        fake = self.discriminator(z.flatten(1))
        real = self.discriminator(torch.randn_like(z).flatten(1))
        fool = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        # Its backward is restricted to the discriminator's parameters, so z needs no detach.
        disc = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )
        return Losses(
            {"autoencoder": reconstruction + self.adv_weight / self.pixels * fool, "discriminator": disc},
            {"mse": reconstruction.detach(), "disc": disc.detach()},
        )


class ACAI(Autoencoder):
    """Adversarially Constrained Autoencoder Interpolation (Berthelot et al., ICLR 2019).

    Interpolants decode(α·z_i + (1 − α)·z_j) of each encoding with the batch's reversed order,
    α ~ U[0, ½]; the critic regresses α from them, and on γ·x + (1 − γ)·x̂ it must answer 0.
    Autoencoder loss: MSE + λ · critic(interpolant)²; critic loss: (critic(interpolant) − α)² +
    critic(γx + (1 − γ)x̂)². The critic has the encoder's architecture at depth adv_depth."""

    def __init__(
        self,
        image_shape,
        depth=16,
        latent=16,
        scales=3,
        *,
        adv_weight: float = 0.5,
        reg: float = 0.2,
        adv_depth: int | None = None,
    ):
        super().__init__(image_shape, depth, latent, scales)
        if not adv_weight >= 0:
            raise ValueError(f"adv_weight must be ≥ 0, got {adv_weight!r}")
        if not 0.0 <= reg <= 1.0:
            raise ValueError(f"reg must be in [0, 1], got {reg!r}")
        self.adv_weight, self.reg = float(adv_weight), float(reg)
        self.critic = Critic(image_shape[0], adv_depth or depth, latent, scales)

    def param_groups(self):
        critic = set(map(id, self.critic.parameters()))
        return {
            "autoencoder": [p for p in self.parameters() if id(p) not in critic],
            "critic": list(self.critic.parameters()),
        }

    def losses(self, x):
        z = self.encode(x)
        decoded = self.decode(z)
        alpha = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=z.dtype)
        alpha = 0.5 - (alpha - 0.5).abs()
        mixed = self.decode(alpha * z + (1 - alpha) * z.flip(0))
        critic_mixed = self.critic(mixed)
        critic_blend = self.critic(self.reg * x + (1 - self.reg) * decoded)
        reconstruction = F.mse_loss(decoded, x)
        autoencoder = reconstruction + self.adv_weight * critic_mixed.square().mean()
        # The critic's backward is restricted to its own parameters: nothing needs a detach, and
        # critic(mixed) is computed once for both losses.
        critic = (critic_mixed - alpha.flatten()).square().mean() + critic_blend.square().mean()
        return Losses(
            {"autoencoder": autoencoder, "critic": critic}, {"mse": reconstruction.detach(), "critic": critic.detach()}
        )
