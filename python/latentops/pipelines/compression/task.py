"""`latentops compress` as a task of the runner's CLI: its options, its report, and what it runs
(one compression, or --grid); the fine-tuning runs themselves are the stages' (stages.py)."""

from __future__ import annotations

from latentops.pipelines.compression.config import CompressConfig
from latentops.pipelines.compression.report import CompressionReport
from latentops.pipelines.options import validate
from latentops.pipelines.task import Task


class CompressTask(Task):
    name = "compression"
    command = "compress"
    help = "prune, quantize, fine-tune and encode a trained run; evaluate it from the compressed file"
    description = (
        "sHAM's pipeline on a `latentops classify`, `distill` or `train` run: magnitude pruning and "
        "fine-tuning (--out/prune), weight sharing by --quantizer and codebook fine-tuning (--out/share), "
        "each layer in its smallest format in --out/model.lops; the model loaded from that file is evaluated "
        "and each layer timed against its dense twin (--out/metrics.json, report.md). --grid sweeps the "
        "paper's grid instead and plots the metric against ψ."
    )
    config_class = CompressConfig
    report = CompressionReport()

    @classmethod
    def main(cls, config: CompressConfig) -> dict:
        from latentops.pipelines.compression.compress import compress
        from latentops.pipelines.compression.grid import run_grid

        validate(config)
        return run_grid(config) if config.grid else compress(config)
