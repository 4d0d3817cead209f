"""latentops.pipelines: training (`train`), ACAI's interpolation metrics, downstream evaluation of
frozen latents and the side-by-side report."""

from latentops.pipelines.downstream import clustering_accuracy, linear_probe_accuracy
from latentops.pipelines.interpolation import decode_interpolations, interpolation_metrics
from latentops.pipelines.train import TrainConfig, train

__all__ = ["TrainConfig", "clustering_accuracy", "decode_interpolations", "interpolation_metrics",
           "linear_probe_accuracy", "train"]
