"""Classifier training as tasks of the runner: `latentops classify` (the Laplacian-networks
regularizer and Parseval variants, geometry targets) and `latentops distill` (a student from a
teacher run: Hinton KD, RKD-D, latent-geometry graphs), the robustness suite and their report."""

from __future__ import annotations

from latentops.pipelines.classifiers.config import ClassifyConfig
from latentops.pipelines.classifiers.distill import DistillConfig, DistillTask
from latentops.pipelines.classifiers.task import ClassifierTask, crop_flip
from latentops.pipelines.runner import run


def classify(config: ClassifyConfig) -> dict:
    """Train (or resume) the classifier run `config` describes; returns the summary also written
    to RUN_DIR/metrics.json (on rank 0; other ranks return {})."""
    return run(ClassifierTask, config)


def distill(config: DistillConfig) -> dict:
    """Train (or resume) the student run `config` describes from its teacher run."""
    return run(DistillTask, config)


__all__ = ["ClassifierTask", "ClassifyConfig", "DistillConfig", "DistillTask", "classify", "crop_flip", "distill"]
