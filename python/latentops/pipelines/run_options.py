"""The options every run has, read by the runner rather than the task. A task's config declares
each of them with these constructors, where its --help lists them; the ones with a default that
depends on the task (steps, batch size) take it as an argument."""

from __future__ import annotations

import dataclasses
import re

from latentops.pipelines.options import COUNT, Check, option

BACKENDS = ("ops", "torch")
# What the runner reads from a config; a task's config must have all of them.
FIELDS = (
    "steps",
    "batch_size",
    "device",
    "backend",
    "threads",
    "seed",
    "eval_every",
    "checkpoint_every",
    "log_every",
    "resume",
    "progress",
    "out",
)


def steps(default: int, help: str | None = "training steps"):
    return option(default, check=COUNT, help=help)


def batch_size(default: int):
    return option(default, check=COUNT, help="global batch size, split evenly across processes")


# The spelling only; whether this machine has the device is distributed.resolve_device's to say.
DEVICE = Check("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v))


def device():
    return option("auto", check=DEVICE, help="auto (cuda if present), cpu, cuda, cuda:N")


def backend():
    return option(
        "ops", choices=BACKENDS, help="ops: latentops' kernels; torch: the pure-torch reference (to compare throughput)"
    )


def threads():
    return option(
        None,
        check=COUNT,
        help="CPU threads for torch (default: torch's choice; on a loaded machine fewer threads can be faster)",
    )


def seed():
    return option(0)


def eval_every():
    return option(None, check=COUNT, help="steps between evaluations (default: steps/10)")


def checkpoint_every():
    return option(None, check=COUNT, help="steps between checkpoints (default: at each evaluation)")


def log_every(default: int = 50):
    return option(default, check=COUNT)


def resume():
    return option(
        False,
        help="continue the run in --out from its last checkpoint (an error if that checkpoint is missing or "
        "corrupted; a folder with no run yet, or whose run stopped before its first checkpoint, starts at step 0)",
    )


def progress():
    return option(True, help="no progress bar")


def out():
    return option(metavar="RUN_DIR")


def eval_interval(config) -> int:
    return config.eval_every or max(1, config.steps // 10)


def checkpoint_interval(config) -> int:
    return config.checkpoint_every or eval_interval(config)


def missing(config_class) -> list[str]:
    """The runner's fields that config_class lacks (none for a valid task config)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return [name for name in FIELDS if name not in names]
