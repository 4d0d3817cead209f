"""A run's folder: what it already holds (a run, a checkpoint to resume), the config it was started
with, and its metrics.jsonl. Only rank 0 writes here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from latentops.pipelines import checkpoint
from latentops.pipelines.options import flag

METRICS_JSONL = "metrics.jsonl"
METRICS_JSON = "metrics.json"
CONFIG_JSON = "config.json"


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)

    def checkpoint_to_resume(self, resume: bool) -> Path | None:
        """The checkpoint to continue from, or None for a fresh run; refuses to start over a run
        unless resume is set (a second run would mix its metrics into the first's)."""
        found = checkpoint.latest(self.path)
        if found is None and (self.path / METRICS_JSONL).exists() and not resume:
            raise FileExistsError(
                f"--out {str(self.path)!r} already holds a run; pass --resume to continue it or choose another --out"
            )
        if found is not None and not resume:
            raise FileExistsError(
                f"--out {str(self.path)!r} already holds a checkpoint "
                f"({found.name}); pass --resume to continue it or choose another --out"
            )
        return found

    def check_identity(self, config, names) -> None:
        """Resuming with another value of one of these fields would silently train something else."""
        path = self.path / CONFIG_JSON
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        for name in names:
            if name in saved and saved[name] != getattr(config, name):
                raise ValueError(
                    f"{flag(name)} is {getattr(config, name)!r} but the "
                    f"run in {str(self.path)!r} was started with {saved[name]!r}"
                )

    def start(self, config, records: list[dict]) -> None:
        """Writes config.json and metrics.jsonl cut back to `records` (what the resumed
        checkpoint has seen: records logged after it will be logged again)."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG_JSON).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        (self.path / METRICS_JSONL).write_text("".join(json.dumps(r) + "\n" for r in records))

    def records(self, up_to_step: int) -> list[dict]:
        path = self.path / METRICS_JSONL
        if not path.is_file():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in records if r.get("step", 0) <= up_to_step]

    def append(self, record: dict) -> None:
        with open(self.path / METRICS_JSONL, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write_summary(self, summary: dict) -> None:
        (self.path / METRICS_JSON).write_text(json.dumps(summary, indent=2) + "\n")
