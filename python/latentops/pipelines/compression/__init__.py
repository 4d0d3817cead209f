"""Model compression as in sHAM (Marinò et al., ICPR 2020) and Deep Compression: `latentops
compress` prunes, quantizes and fine-tunes a trained run, stores it in one latentops.codecs file and
evaluates the model loaded back from that file."""

from __future__ import annotations

from latentops.pipelines.compression.compress import compress
from latentops.pipelines.compression.config import CompressConfig
from latentops.pipelines.compression.grid import run_grid
from latentops.pipelines.compression.model_file import load_compressed
from latentops.pipelines.compression.task import CompressTask

__all__ = ["CompressConfig", "CompressTask", "compress", "load_compressed", "run_grid"]
