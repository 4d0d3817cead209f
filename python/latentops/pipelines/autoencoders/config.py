"""The options of `latentops train`, in the order its --help lists them."""

from __future__ import annotations

import dataclasses

from latentops.data import DATASETS
from latentops.models import MODELS
from latentops.pipelines import run_options as run
from latentops.pipelines.autoencoders.downstream import CLASSIFIERS, CLUSTERINGS
from latentops.pipelines.autoencoders.interpolation import DEGENERATE, DISTANCES, PAIRS
from latentops.pipelines.options import COUNT, POSITIVE, Check, option


def _option_items(text) -> bool:
    """Whether text is KEY=VALUE,... (the keys and values are checked against the model later)."""
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    return all(key.strip() and value.strip() for key, sep, value in (i.partition("=") for i in items) if sep) and all(
        "=" in item for item in items
    )


MODEL_OPTIONS = Check("KEY=VALUE,... (e.g. codebook_size=128,beta=0.5)", _option_items)


@dataclasses.dataclass(kw_only=True)
class TrainConfig:
    """One training run. Defaults follow ACAI: batch 64, Adam at 1e-4, 2^24 images (262,144 steps),
    depth 16, 16 latent channels on a 2×2 map on lines (4×4 for VQ-VAE, as ACAI's runs/*.sh) and
    a 4×4 map elsewhere."""

    model: str = option(choices=MODELS)
    dataset: str = option("lines", choices=DATASETS)
    data_dir: str | None = option(None, help="folder with the mnist / svhn / cifar10 / cifar100 files")
    steps: int = run.steps(262_144, help="training steps (default: ACAI's 2^24 images at batch 64)")
    batch_size: int = run.batch_size(64)
    model_option: str = option(
        "", check=MODEL_OPTIONS, help="the model's own options, KEY=VALUE,... (a wrong key lists them)"
    )
    latent: int = option(16, check=COUNT, help="channels of the latent map")
    depth: int = option(16, check=COUNT, help="channels of the first scale")
    scales: int | None = option(
        None, check=COUNT, help="2× poolings (default: ACAI's latent map, 2×2 on lines (VQ-VAE 4×4), else 4×4)"
    )
    lr: float = option(1e-4, check=POSITIVE)
    device: str = run.device()
    backend: str = run.backend()
    threads: int | None = run.threads()
    seed: int = run.seed()
    eval_every: int | None = run.eval_every()
    checkpoint_every: int | None = run.checkpoint_every()
    log_every: int = run.log_every()
    eval_pairs: int = option(256, check=COUNT, help="interpolation pairs per evaluation")
    interpolation_pairs: str = option(
        "random",
        choices=PAIRS,
        help="lines: pairs of random test lines (ACAI) or of each line and it turned by 45-135°",
    )
    mean_distance: str = option(
        "acai", choices=DISTANCES, help="lines: cosine of raw images (ACAI) or of images shifted to [0, 1] (strokes)"
    )
    smoothness_degenerate: str = option(
        "acai", choices=DEGENERATE, help="lines: a pair with no rotation scores 0 (ACAI) or 1 (worst)"
    )
    eval_images: int = option(1024, check=COUNT, help="test images whose reconstruction error each evaluation reports")
    clustering: str = option(
        "acai",
        choices=CLUSTERINGS,
        help="acai: k-means (random init) on whitened training latents, scored on the test set (ACAI); "
        "test: k-means++ fit and scored on the test latents",
    )
    kmeans_restarts: int = option(1000, check=COUNT, help="k-means seedings (ACAI: 1000)")
    cluster_images: int = option(60_000, check=COUNT, help="training images k-means is fit on (--clustering acai)")
    classifier: str = option(
        "online",
        choices=CLASSIFIERS,
        help="online: one dense layer trained with the autoencoder on stop-gradient latents, Adam at --lr, "
        "scored at each evaluation on --eval-images test images and at the end on all (ACAI: all, each time); "
        "lbfgs: fit by L-BFGS on standardized latents after training",
    )
    probe_images: int = option(10_000, check=COUNT, help="training images for --classifier lbfgs")
    downstream: bool = option(True, help="skip the final clustering (and --classifier lbfgs) evaluation")
    resume: bool = run.resume()
    progress: bool = run.progress()
    out: str = run.out()
