"""latentops.models: ACAI's autoencoder zoo on one convolutional backbone, with VQ and soft-VQ
bottlenecks from latentops.nn. build_model(name, image_shape, ...) makes any of MODELS."""

from __future__ import annotations

import inspect
import math
import typing

from latentops.models.adversarial import ACAI, AdversarialAutoencoder
from latentops.models.backbone import Critic, Decoder, Encoder
from latentops.models.base import Autoencoder, Losses
from latentops.models.quantized import VQVAE, AcaiVQVAE, PaperSoftVQAutoencoder, SoftVQAutoencoder
from latentops.models.regularized import VAE, AcaiVAE, DenoisingAutoencoder, DropoutAutoencoder

MODELS = {
    "baseline": Autoencoder,
    "dropout": DropoutAutoencoder,
    "denoising": DenoisingAutoencoder,
    "vae": VAE,
    "vae-acai": AcaiVAE,
    "aae": AdversarialAutoencoder,
    "vqvae": VQVAE,
    "vqvae-acai": AcaiVQVAE,
    "softvq": SoftVQAutoencoder,
    "softvq-paper": PaperSoftVQAutoencoder,
    "acai": ACAI,
}


def default_scales(image_shape, width: int = 4) -> int:
    """Poolings down to a width×width latent map (ACAI's latent width), at least one."""
    return max(1, int(math.log2(min(image_shape[1:]) // width)))


def acai_latent_width(model: str, dataset: str) -> int:
    """The side of ACAI's latent map for `model` on `dataset`: 2 on lines except VQ-VAE's 4
    (runs/*.sh: --latent_width=2, runs/vqvae.sh: 4), 4 on every other dataset."""
    return 2 if dataset == "lines" and not model.startswith("vqvae") else 4


def model_options(name: str) -> dict[str, tuple[tuple[type, ...], object]]:
    """The options of model `name` beyond the backbone's (its class's keyword-only parameters):
    name -> (the types a value may have, the default)."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    cls = MODELS[name]
    hints = typing.get_type_hints(cls.__init__)
    options = {}
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            hint = hints.get(parameter.name, type(parameter.default))
            options[parameter.name] = (typing.get_args(hint) or (hint,), parameter.default)
    return options


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _convert(text: str, kinds: tuple[type, ...]):
    """`text` as the first of `kinds` (bool, int, float, str, None) that reads it, else ValueError."""
    for kind in kinds:
        if kind is type(None) and text.lower() == "none":
            return None
        if kind is bool and text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        if kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        if kind is str:
            return text
    names = " or ".join("none" if kind is type(None) else kind.__name__ for kind in kinds)
    raise ValueError(f"{text!r} is not {names}")


def parse_model_options(name: str, text: str) -> dict:
    """ "codebook_size=128,beta=0.5" → {"codebook_size": 128, "beta": 0.5}: model `name`'s options
    (model_options), each value read as its option's type. ValueError naming the key at fault and
    listing the model's options."""
    known = model_options(name)
    listing = ", ".join(f"{key}={default}" for key, (_, default) in known.items()) or "none"
    parsed = {}
    for item in filter(None, (part.strip() for part in str(text).split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"model option {item!r} must be KEY=VALUE")
        if key not in known:
            raise ValueError(f"{name} has no option {key!r}; its options (with defaults): {listing}")
        if key in parsed:
            raise ValueError(f"model option {key!r} is given twice")
        try:
            parsed[key] = _convert(value, known[key][0])
        except ValueError as error:
            raise ValueError(f"model option {key}: {error}") from None
    return parsed


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
    "AcaiVAE",
    "AcaiVQVAE",
    "AdversarialAutoencoder",
    "Autoencoder",
    "Critic",
    "Decoder",
    "DenoisingAutoencoder",
    "DropoutAutoencoder",
    "Encoder",
    "Losses",
    "PaperSoftVQAutoencoder",
    "SoftVQAutoencoder",
    "acai_latent_width",
    "build_model",
    "default_scales",
    "model_options",
    "parse_model_options",
]
