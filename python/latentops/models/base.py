"""What every model of the zoo provides to the training pipeline."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from latentops.models.backbone import Decoder, Encoder, check_backbone


class Losses(NamedTuple):
    """per_group: the loss each parameter group (see Autoencoder.param_groups) minimizes, in the
    order they are stepped; logs: scalar tensors to log (detached; read only when logging)."""

    per_group: dict[str, torch.Tensor]
    logs: dict[str, torch.Tensor]


class Autoencoder(nn.Module):
    """The baseline: encode, decode, mean squared error. Subclasses change the bottleneck or add
    losses and adversaries.

    encode(x) gives the latent the pipeline interpolates and probes (deterministic: VAE's mean,
    the pre-quantization vectors of VQ models); decode(z) maps such a latent (or a mix of two) to
    an image, through the bottleneck where there is one, as at evaluation."""

    def __init__(self, image_shape, depth: int = 16, latent: int = 16, scales: int = 3):
        super().__init__()
        check_backbone(image_shape, depth, latent, scales)
        self.image_shape = tuple(image_shape)
        self.depth, self.latent, self.scales = depth, latent, scales
        channels = image_shape[0]
        self.encoder = Encoder(channels, depth, self.encoder_channels(), scales)
        self.decoder = Decoder(channels, depth, latent, scales)

    def encoder_channels(self) -> int:
        return self.latent

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the latent map the decoder takes."""
        return (self.latent, self.image_shape[1] >> self.scales, self.image_shape[2] >> self.scales)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def probe_latent(self, x: torch.Tensor) -> torch.Tensor:
        """What the downstream evaluation (classifier, clustering) reads: encode(x), unless a model's
        paper evaluates another tensor."""
        return self.encode(x)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer, each stepped on its own loss of `losses`."""
        return {"autoencoder": list(self.parameters())}

    def losses(self, x: torch.Tensor) -> Losses:
        reconstruction = F.mse_loss(self.decode(self.encode(x)), x)
        return Losses({"autoencoder": reconstruction}, {"mse": reconstruction.detach()})
