"""A run's folder: what it already holds (a run, a checkpoint to resume), the config it was started
with, its metrics.jsonl, and the lock that keeps a second run out of it. Only rank 0 writes here.

Every file is replaced atomically (checkpoint.write_atomic) except metrics.jsonl, which grows by
appends: a crash can tear its last line, which a resume drops (it lies after the checkpoint, whose
records were fsynced before its save). Anything else that cannot be read is refused by name."""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from latentops.pipelines import checkpoint
from latentops.pipelines.options import flag

METRICS_JSONL = "metrics.jsonl"
METRICS_JSON = "metrics.json"
CONFIG_JSON = "config.json"
LOCK = ".lock"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


def read_jsonl(path: Path, allow_torn_end: bool = False) -> list[dict]:
    """The JSON objects of a JSON-lines file; ValueError naming the file and line of one that is
    not an object. allow_torn_end: an unterminated last line that does not parse (an append cut
    short) is dropped."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(path)!r} is corrupted: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            if allow_torn_end and number == len(lines):  # no newline after it: the last append, torn
                break
            raise ValueError(f"{str(path)!r} is corrupted: line {number} is not JSON ({error})") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int) or "kind" not in record:
            raise ValueError(f"{str(path)!r} is corrupted: line {number} is not a metrics record ({line[:80]!r})")
        records.append(record)
    return records


def read_json_object(path: Path) -> dict:
    """A JSON file holding an object; ValueError naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is corrupted: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{str(path)!r} is corrupted: it holds a {type(value).__name__}, not a JSON object")
    return value


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self._lock = None

    # -- the lock ----------------------------------------------------------------------------

    def lock(self) -> None:
        """Takes the folder (creating it) for this process until unlock() or its exit: an advisory
        flock, which the kernel drops with the process however it ends, so a crash leaves no stale
        lock. RunFolderBusy, naming the holder (the pid and host it wrote), when another has it."""
        self._check_path()
        self.path.mkdir(parents=True, exist_ok=True)
        # Held open until unlock(), so no context manager; a+: the holder's note stays until we hold the lock.
        file = open(self.path / LOCK, "a+")  # noqa: SIM115
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "a process that has not written its pid yet"
            file.close()
            raise RunFolderBusy(
                f"--out {str(self.path)!r} is in use by another run ({holder}); wait for it to end, "
                f"or stop it, or choose another --out"
            ) from None
        file.seek(0)
        file.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        file.write(f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n")
        file.flush()
        self._lock = file

    def unlock(self) -> None:
        if self._lock is not None:
            # Closing releases the flock. The file stays: unlinking it could let a process that
            # opened it a moment before lock a file no later run will find.
            self._lock.close()
            self._lock = None

    def _check_path(self) -> None:
        """--out must be a folder or a path where one can be made, not a file or under one."""
        for path in (self.path, *self.path.parents):
            if path.exists():
                if path.is_dir():
                    return
                where = "is a file" if path == self.path else f"lies under {str(path)!r}, which is a file"
                raise ValueError(f"--out {str(self.path)!r} {where}; --out must be a folder")

    # -- what the folder holds ---------------------------------------------------------------

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in (METRICS_JSONL, checkpoint.LATEST)) or any(
            self.path.glob("checkpoint-*")
        )

    def checkpoint_to_resume(self, resume: bool) -> Path | None:
        """The checkpoint to continue from, or None for a fresh run (with resume, a folder without
        a run, or whose run stopped before its first checkpoint). Refuses to start over a run
        unless resume is set (a second run would mix its metrics into the first's); with resume,
        a checkpoint that is missing or unreadable is a CheckpointError, not a fresh start."""
        if not resume:
            if self.holds_run():
                raise FileExistsError(
                    f"--out {str(self.path)!r} already holds a run; pass --resume to continue it "
                    "or choose another --out"
                )
            return None
        return checkpoint.latest(self.path)

    def check_identity(self, config, names) -> None:
        """Resuming with another value of one of these fields would silently train something else."""
        path = self.path / CONFIG_JSON
        if not path.is_file():
            raise ValueError(
                f"{str(path)!r} is missing: the settings the run was started with are unknown, so "
                f"--resume cannot check them; restore it, or remove {str(self.path)!r} to start afresh"
            )
        try:
            saved = read_json_object(path)
        except ValueError as error:
            raise ValueError(f"{error}; restore it, or remove {str(self.path)!r} to start afresh") from None
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
        checkpoint.write_atomic(self.path / CONFIG_JSON, json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        checkpoint.write_atomic(self.path / METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in records))

    def records(self, up_to_step: int) -> list[dict]:
        """The records of the run up to its checkpoint at `up_to_step`; ValueError naming
        metrics.jsonl when it is missing, corrupted or ends before that step."""
        path = self.path / METRICS_JSONL
        if not path.is_file():
            raise ValueError(
                f"{str(path)!r} is missing: resuming would lose the records of steps 1 to {up_to_step}; "
                f"restore it, or remove {str(self.path)!r} to start afresh"
            )
        records = [r for r in read_jsonl(path, allow_torn_end=True) if r["step"] <= up_to_step]
        # The step of a checkpoint always logs a record, fsynced before the checkpoint's save.
        if up_to_step > 0 and not any(r["step"] == up_to_step for r in records):
            raise ValueError(
                f"{str(path)!r} is truncated: it has no record of step {up_to_step}, where the checkpoint "
                f"was saved; remove {str(self.path)!r} to start afresh"
            )
        return records

    def append(self, record: dict) -> None:
        with open(self.path / METRICS_JSONL, "a") as f:
            f.write(json.dumps(record) + "\n")

    def sync_records(self) -> None:
        """Makes the records appended so far durable (before a checkpoint that has seen them)."""
        with open(self.path / METRICS_JSONL, "rb") as f:
            os.fsync(f.fileno())

    def write_summary(self, summary: dict) -> None:
        checkpoint.write_atomic(self.path / METRICS_JSON, json.dumps(summary, indent=2) + "\n")
