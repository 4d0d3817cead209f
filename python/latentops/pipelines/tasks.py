"""The tasks of the runner. Each gets its `latentops` subcommand (Task.command) and `latentops
report` finds a run's task here by the summary's "task" key: a new task is one more entry."""

from __future__ import annotations

from latentops.pipelines.autoencoders import AutoencoderTask
from latentops.pipelines.classifiers import ClassifierTask, DistillTask
from latentops.pipelines.compression import CompressTask
from latentops.pipelines.task import Task

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (AutoencoderTask, ClassifierTask, DistillTask, CompressTask)
}
# Runs written before the summary named its task were all of this one.
DEFAULT = AutoencoderTask.name
