"""ACAI's autoencoder zoo as a task of the runner (`latentops train`): its config, the task, its
interpolation metrics on lines, the downstream evaluation of frozen latents and its report layout."""

from __future__ import annotations

from latentops.pipelines.autoencoders.config import TrainConfig
from latentops.pipelines.autoencoders.downstream import clustering_accuracy, linear_probe_accuracy
from latentops.pipelines.autoencoders.interpolation import decode_interpolations, interpolation_metrics
from latentops.pipelines.autoencoders.task import AutoencoderTask
from latentops.pipelines.runner import run


def train(config: TrainConfig) -> dict:
    """Train (or resume) the autoencoder run `config` describes; returns the summary also written
    to RUN_DIR/metrics.json (on rank 0; other ranks return {})."""
    return run(AutoencoderTask, config)


__all__ = [
    "AutoencoderTask",
    "TrainConfig",
    "clustering_accuracy",
    "decode_interpolations",
    "interpolation_metrics",
    "linear_probe_accuracy",
    "train",
]
