"""latentops.pipelines: one runner (run folder, --resume, loop, checkpoints, ranks, metrics) for
every task; the autoencoder zoo (`train`, ACAI's interpolation metrics, downstream evaluation of
frozen latents); the side-by-side report."""

from latentops.pipelines.autoencoders import (
    TrainConfig,
    clustering_accuracy,
    decode_interpolations,
    interpolation_metrics,
    linear_probe_accuracy,
    train,
)
from latentops.pipelines.runner import run
from latentops.pipelines.task import Task, TaskReport, Training

__all__ = [
    "Task",
    "TaskReport",
    "TrainConfig",
    "Training",
    "clustering_accuracy",
    "decode_interpolations",
    "interpolation_metrics",
    "linear_probe_accuracy",
    "run",
    "train",
]
