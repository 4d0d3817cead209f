"""`latentops compress` as a task of the runner's CLI: its options, its report, and what it runs
(one compression, or --grid); the fine-tuning runs themselves are the stages' (stages.py)."""

from __future__ import annotations

import os
from pathlib import Path

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
    def main(cls, config: CompressConfig) -> None:
        """Prints the per-layer table (--grid: the grid's table); the summary is in metrics.json."""
        from latentops.pipelines.compression.compress import REPORT, compress
        from latentops.pipelines.compression.grid import GRID_MD, run_grid

        validate(config)
        if Path(config.out).resolve() == Path(config.run).resolve():
            raise ValueError(f"--out {config.out!r} is RUN itself: give the compression a folder of its own")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("compress runs in one process: start it without torchrun")
        if config.grid:
            run_grid(config)
        else:
            compress(config)
        print((Path(config.out) / (GRID_MD if config.grid else REPORT)).read_text())
