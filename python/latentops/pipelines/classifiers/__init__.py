"""Classifier training as a task of the runner (`latentops classify`): the Laplacian-networks
regularizer and Parseval variants, geometry targets, and their report layout."""

from __future__ import annotations

from latentops.pipelines.classifiers.config import ClassifyConfig
from latentops.pipelines.classifiers.task import ClassifierTask, crop_flip
from latentops.pipelines.runner import run


def classify(config: ClassifyConfig) -> dict:
    """Train (or resume) the classifier run `config` describes; returns the summary also written
    to RUN_DIR/metrics.json (on rank 0; other ranks return {})."""
    return run(ClassifierTask, config)


__all__ = ["ClassifierTask", "ClassifyConfig", "classify", "crop_flip"]
