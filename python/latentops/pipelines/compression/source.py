"""The trained run `latentops compress` starts from: its task (classifier, student or autoencoder),
rebuilt from its config.json, with the model of its latest checkpoint (checksums verified); and the
task's headline metric, which the compressed model is judged by."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from latentops.pipelines import checkpoint
from latentops.pipelines.run_folder import CONFIG_JSON, METRICS_JSON, read_json_object
from latentops.pipelines.task import Task, Training

# summary["task"] → (the metric, True when higher is better). A task not listed cannot be compressed.
HEADLINE = {
    "classifiers": ("test_accuracy", True),
    "distillation": ("test_accuracy", True),
    "autoencoders": ("test_mse", False),
}


def read_source(run_dir) -> tuple[type[Task], dict, dict]:
    """(task class, saved config, summary) of a finished run; ValueError / FileNotFoundError naming
    the folder or file at fault."""
    from latentops.pipelines.tasks import DEFAULT, TASKS

    run_dir = Path(run_dir)
    summary_path = run_dir / METRICS_JSON
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"RUN {str(run_dir)!r} has no {METRICS_JSON}: not a finished `latentops classify`, `distill` or "
            "`train` run (finish it with --resume)"
        )
    summary = read_json_object(summary_path)
    name = summary.get("task", DEFAULT)
    if name not in HEADLINE:
        raise ValueError(
            f"RUN {str(run_dir)!r} is a run of the task {name!r}; compress takes runs of {', '.join(HEADLINE)}"
        )
    return TASKS[name], read_json_object(run_dir / CONFIG_JSON), summary


def load_source(run_dir, device: torch.device, *, batch_size: int, seed: int) -> tuple[Task, Training]:
    """The run's task and its Training, the model restored from the latest checkpoint. The task
    draws its batches with `batch_size` and `seed` (the fine-tuning's, not the run's)."""
    task_class, saved, _ = read_source(run_dir)
    fields = {f.name for f in dataclasses.fields(task_class.config_class)}
    config = task_class.config_class(**{k: v for k, v in saved.items() if k in fields})
    config.batch_size, config.seed = batch_size, seed
    found = checkpoint.latest(Path(run_dir))
    if found is None:
        raise FileNotFoundError(f"RUN {str(run_dir)!r} has no checkpoint")
    task = task_class(config)
    training = task.build(device)
    checkpoint.load(found, training.model, training.optimizers, device, training.schedulers)
    return task, training
