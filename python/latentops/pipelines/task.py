"""What a pipeline supplies to the runner (latentops.pipelines.runner) and to `latentops report`.

A Task builds its model and data, names its parameter groups and their losses, evaluates, and
says how the report shows its runs. The runner owns everything else: the run folder, --resume, the
loop and its cadence, checkpoints, ranks, metrics.jsonl / metrics.json, the progress bar and the
summary. A new task subclasses Task, gives its config dataclass (fields declared with
latentops.pipelines.options, the runner's with latentops.pipelines.run_options) and is listed in
latentops.pipelines.tasks, which gives it its subcommand."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from latentops.models.base import Losses


@dataclasses.dataclass
class Training:
    """What Task.build hands the runner. Each group's optimizer steps on that group's loss, whose
    backward reaches only the group's parameters; schedulers step once per training step (an
    epoch schedule is a step schedule that changes every steps-per-epoch) and are checkpointed."""

    model: torch.nn.Module
    groups: dict[str, list[torch.nn.Parameter]]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = dataclasses.field(default_factory=dict)


class Task:
    """One kind of training run. The runner calls, in order: __init__ (before any process group,
    so a missing data file fails fast), build under the run's seed, then per step batch, losses
    and after_step; evaluate on rank 0 at the evaluation cadence; final_metrics on rank 0 at the
    end. evaluate and final_metrics run with the random streams forked: they never change training."""

    name: ClassVar[str]  # summary["task"]: how `latentops report` finds it
    command: ClassVar[str]  # its `latentops` subcommand
    help: ClassVar[str] = ""  # the subcommand's line in `latentops --help`
    description: ClassVar[str] = ""  # the subcommand's --help text
    config_class: ClassVar[type]  # a dataclass: the subcommand's options
    identity: ClassVar[tuple[str, ...]] = ()  # config fields a --resume must match (the runner adds its own)
    progress_loss: ClassVar[str | None] = None  # the training log shown beside the progress bar
    report: ClassVar[TaskReport]

    def __init__(self, config):
        self.config = config

    @classmethod
    def main(cls, config) -> dict | None:
        """What the task's subcommand does with its config: train one run with the runner and
        return its summary, which the CLI prints. A command made of several runs (compress: a
        fine-tuning run per stage) overrides it (None: it printed what it has to say)."""
        from latentops.pipelines.runner import run

        return run(cls, config)

    def describe(self) -> dict:
        """The summary's first keys after "task" (e.g. model and dataset); their values, joined by
        "/", label the progress bar, and by " on ", the loss plot."""
        raise NotImplementedError

    def build(self, device: torch.device) -> Training:
        raise NotImplementedError

    def batch(self, step: int, rank: int, world: int) -> Any:
        """This rank's share of global batch `step`, on the device; a pure function of the step, so
        a resumed run sees the same data."""
        raise NotImplementedError

    def losses(self, batch) -> Losses:
        """Losses.per_group: the loss of each group of Training.groups, in stepping order;
        Losses.logs: scalars logged as loss/NAME (the runner logs each group's loss too)."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """After the optimizers (and schedulers) took step `step`: e.g. a projection or re-applied
        pruning masks. Nothing by default."""

    def evaluate(self, step: int, run_dir: Path) -> dict:
        """Metrics of the model at `step` (logged as an eval record); may write PNGs to run_dir."""
        return {}

    def final_metrics(self, records: list[dict]) -> dict:
        """The summary's last keys, from the run's records and a last look at the model."""
        return {}


@dataclasses.dataclass(frozen=True)
class Row:
    """A report table row: the summary key, its label, how a value is written."""

    key: str
    label: str
    format: Callable[[Any], str]


class TaskReport:
    """How `latentops report` shows runs of one task: a table per (task, dataset), the task's rows
    above the runner's (throughput, steps), and its part of report.png. The defaults suit any task."""

    # (training log, panel title): each run's curve of it in report.png; None: no panel.
    loss: tuple[str, str] | None = None
    # The summary keys the methods below read: a metrics.json without one is refused by name.
    keys: tuple[str, ...] = ()

    def section(self, dataset: str) -> str:
        """The table's heading."""
        return dataset

    def section_order(self, dataset: str) -> Any:
        return dataset

    def rows(self, dataset: str) -> list[Row]:
        return []

    def column(self, summary: dict) -> str:
        """A run's column name (runs with equal names get their folder's name added)."""
        return str(summary.get("model", "run"))

    def column_order(self, summary: dict) -> Any:
        """Sort key of a run's column; equal keys keep the order of the arguments."""
        return 0

    def figure_metrics(self, summaries: list[dict]) -> list[tuple[str, str]]:
        """(summary key, title) of the bar charts in report.png, given this task's runs."""
        return []

    def aggregate(self, dataset: str, runs: list[dict], out: Path) -> str | None:
        """A markdown section that replaces the one-column-per-run table of these runs (e.g.
        statistics over seeds), writing its own figures to `out`; None keeps the table."""
        return None

    def strip(self, run_dir: Path, summary: dict) -> np.ndarray | None:
        """An image of the run for report.png (as plots.tile returns), or None."""
        return None
