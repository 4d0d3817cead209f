"""The options of `latentops train`, in the order its --help lists them."""

from __future__ import annotations

import dataclasses

from latentops.data import DATASETS
from latentops.models import MODELS
from latentops.pipelines import run_options as run
from latentops.pipelines.options import COUNT, POSITIVE, option


@dataclasses.dataclass(kw_only=True)
class TrainConfig:
    """One training run. Defaults follow ACAI on lines: batch 64, Adam at 1e-4, 2^24 images
    (262,144 steps), depth 16, a 4×4×16 latent."""

    model: str = option(choices=MODELS)
    dataset: str = option("lines", choices=DATASETS)
    data_dir: str | None = option(None, help="folder with the mnist / svhn / cifar10 / cifar100 files")
    steps: int = run.steps(262_144, help="training steps (default: ACAI's 2^24 images at batch 64)")
    batch_size: int = run.batch_size(64)
    latent: int = option(16, check=COUNT, help="channels of the 4×4 latent map (the latent has 16·LATENT numbers)")
    depth: int = option(16, check=COUNT, help="channels of the first scale")
    scales: int | None = option(None, check=COUNT, help="2× poolings (default: down to a 4×4 latent map)")
    lr: float = option(1e-4, check=POSITIVE)
    device: str = run.device()
    backend: str = run.backend()
    threads: int | None = run.threads()
    seed: int = run.seed()
    eval_every: int | None = run.eval_every()
    checkpoint_every: int | None = run.checkpoint_every()
    log_every: int = run.log_every()
    eval_pairs: int = option(256, check=COUNT, help="interpolation pairs per evaluation")
    eval_images: int = option(1024, check=COUNT, help="test images whose reconstruction error each evaluation reports")
    kmeans_restarts: int = option(100, check=COUNT)
    probe_images: int = option(10_000, check=COUNT, help="training images for the frozen-latent classifier")
    downstream: bool = option(True, help="skip the final classifier and clustering evaluation")
    resume: bool = run.resume()
    progress: bool = run.progress()
    out: str = run.out()
