"""latentops.models: ACAI's autoencoder zoo on one convolutional backbone, with VQ and soft-VQ
bottlenecks from latentops.nn. build_model(name, image_shape, ...) makes any of MODELS."""

from __future__ import annotations

import math

from latentops.models.adversarial import ACAI, AdversarialAutoencoder
from latentops.models.backbone import Critic, Decoder, Encoder
from latentops.models.base import Autoencoder, Losses
from latentops.models.quantized import VQVAE, SoftVQAutoencoder
from latentops.models.regularized import VAE, DenoisingAutoencoder, DropoutAutoencoder

MODELS = {
    "baseline": Autoencoder,
    "dropout": DropoutAutoencoder,
    "denoising": DenoisingAutoencoder,
    "vae": VAE,
    "aae": AdversarialAutoencoder,
    "vqvae": VQVAE,
    "softvq": SoftVQAutoencoder,
    "acai": ACAI,
}


def default_scales(image_shape) -> int:
    """Poolings down to a 4×4 latent map (ACAI's latent width), at least one."""
    return max(1, int(math.log2(min(image_shape[1:]) // 4)))


def build_model(
    name: str, image_shape, *, depth: int = 16, latent: int = 16, scales: int | None = None, **options
) -> Autoencoder:
    """Model `name` (a key of MODELS) for images of image_shape (C, H, W); options go to its class."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    scales = default_scales(image_shape) if scales is None else scales
    return MODELS[name](tuple(image_shape), depth, latent, scales, **options)


__all__ = [
    "ACAI",
    "MODELS",
    "VAE",
    "VQVAE",
    "AdversarialAutoencoder",
    "Autoencoder",
    "Critic",
    "Decoder",
    "DenoisingAutoencoder",
    "DropoutAutoencoder",
    "Encoder",
    "Losses",
    "SoftVQAutoencoder",
    "build_model",
    "default_scales",
]
