"""Checkpoints that resume a run exactly: the model's state in safetensors, and the optimizers
(and learning-rate schedulers, where a task has them), every rank's random generator states and the
loop's counters in a weights-only torch file.

A save can be cut short at any point (a crash, SIGKILL, a full disk) without harming the checkpoint
in force: each save fills a temporary folder .checkpoint-STEP.tmp, fsyncs every file, writes
manifest.json (the SHA-256 and size of each file) last, renames the folder to checkpoint-STEP and
only then replaces the file `latest` (also written to a temporary file, fsynced and renamed) to
point at it. A load trusts nothing it finds: `latest` must name a folder that is there, every file
of the manifest must match its checksum, and each failure is a CheckpointError naming the file."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

LATEST = "latest"
MODEL = "model.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_FOLDER = re.compile(r"checkpoint-(\d+)")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or corrupted (the message names the file)."""


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def fsync_dir(path: Path) -> None:
    """Makes the entries of `path` (a rename, a new file) durable, not only the files' bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """path holds either its old content or `text`, whatever happens during the write."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _digest(path: Path, sync: bool = False) -> dict:
    """The file's size and SHA-256; sync: fsync it first (a save: the digest is then of the bytes
    on disk, which a load compares against)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        if sync:
            os.fsync(f.fileno())
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def save(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizers: dict,
    rng_states: list,
    counters: dict,
    schedulers: dict | None = None,
) -> Path:
    folder = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(tmp / MODEL))
    state = {
        "step": step,
        "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
        "rng": rng_states,
        "counters": counters,
    }
    if schedulers:  # absent otherwise: the files of runs without schedulers keep their old form
        state["schedulers"] = {g: s.state_dict() for g, s in schedulers.items()}
    torch.save(state, tmp / STATE)
    files = {name: _digest(tmp / name, sync=True) for name in (MODEL, STATE)}
    # Last: a folder with a manifest has all its files complete.
    write_atomic(tmp / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "step": step, "files": files}, indent=2))
    # A folder of this step can be left by a save cut short between this rename and `latest`'s.
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    fsync_dir(run_dir)
    write_atomic(run_dir / LATEST, folder.name + "\n")
    for old in [*run_dir.glob("checkpoint-*"), *run_dir.glob(".checkpoint-*.tmp")]:  # keep only `latest`'s
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _fresh_hint(run_dir: Path) -> str:
    return f"to start the run afresh, remove {str(run_dir)!r} or choose another --out"


def latest(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names, or None when the folder has none at all (no `latest` and no
    checkpoint folder: the run, if any, stopped before its first save). CheckpointError when
    `latest` is unreadable or names a folder that is not there, or when checkpoint folders lie
    there without a `latest`: resuming would silently start over."""
    pointer = run_dir / LATEST
    if not pointer.exists():
        orphans = sorted(p.name for p in run_dir.glob("checkpoint-*"))
        if orphans:
            raise CheckpointError(
                f"{str(pointer)!r} is missing but {str(run_dir)!r} holds {', '.join(orphans)}: to resume "
                f"from one, write its name into {str(pointer)!r}; {_fresh_hint(run_dir)}"
            )
        return None
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{str(pointer)!r} cannot be read ({error}); {_fresh_hint(run_dir)}") from None
    if not _FOLDER.fullmatch(name):
        raise CheckpointError(
            f"{str(pointer)!r} should name a checkpoint folder (checkpoint-STEP) but holds {name[:80]!r}; "
            f"{_fresh_hint(run_dir)}"
        )
    folder = run_dir / name
    if not folder.is_dir():
        raise CheckpointError(f"{str(pointer)!r} names {name}, but {str(folder)!r} is missing; {_fresh_hint(run_dir)}")
    return folder


def verify(folder: Path) -> None:
    """CheckpointError naming the first file of the checkpoint that is missing or differs from
    what its save wrote (size and SHA-256 in manifest.json)."""
    hint = _fresh_hint(folder.parent)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{str(manifest_path)!r} is missing: the checkpoint is incomplete, or was written "
            f"before latentops checksummed checkpoints; {hint}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        expected = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{str(manifest_path)!r} is corrupted ({error!r}); {hint}") from None
    for name in (MODEL, STATE):
        if name not in expected:
            raise CheckpointError(f"{str(manifest_path)!r} does not list {name}; {hint}")
    for name, (size, sha256) in expected.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{str(path)!r} is missing; {hint}")
        found = _digest(path)
        if (found["bytes"], found["sha256"]) != (size, sha256):
            raise CheckpointError(
                f"{str(path)!r} is corrupted: {found['bytes']} bytes with SHA-256 {found['sha256'][:16]}…, "
                f"but its save wrote {size} bytes with SHA-256 {sha256[:16]}… (manifest.json); {hint}"
            )


def load(
    folder: Path, model: torch.nn.Module, optimizers: dict, device: torch.device, schedulers: dict | None = None
) -> dict:
    """Restore model, optimizers and schedulers in place, after verifying the checkpoint's
    checksums; returns the state (step, rng, counters)."""
    verify(folder)
    model_path, state_path = folder / MODEL, folder / STATE
    # The checksums hold, so a failure below is a file this latentops cannot read (another
    # version's, or damaged before its checksum was taken): still named, never a traceback.
    try:
        weights = load_file(str(model_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{str(model_path)!r} cannot be read: {error}") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{str(model_path)!r} does not fit this model: {error}") from None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise CheckpointError(f"{str(state_path)!r} cannot be read: {error}") from None
    if set(state["optimizers"]) != set(optimizers):
        raise ValueError(
            f"checkpoint {folder} has optimizers {sorted(state['optimizers'])}, this model has {sorted(optimizers)}"
        )
    for group, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][group])
    saved = state.get("schedulers", {})
    if set(saved) != set(schedulers or {}):
        raise ValueError(f"checkpoint {folder} has schedulers {sorted(saved)}, this run has {sorted(schedulers or {})}")
    for group, scheduler in (schedulers or {}).items():
        scheduler.load_state_dict(saved[group])
    return state
