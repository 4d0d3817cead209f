"""Checkpoints that resume a run exactly: the model's state in safetensors, and the optimizers
(and learning-rate schedulers, where a task has them), every rank's random generator states and the
loop's counters in a weights-only torch file.

Each save writes a new folder checkpoint-STEP and then atomically points the file `latest` at it,
so an interruption during a save leaves the previous checkpoint in force."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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
    save_file(tensors, str(tmp / "model.safetensors"))
    state = {
        "step": step,
        "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
        "rng": rng_states,
        "counters": counters,
    }
    if schedulers:  # absent otherwise: the files of runs without schedulers keep their old form
        state["schedulers"] = {g: s.state_dict() for g, s in schedulers.items()}
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    pointer = run_dir / f".{LATEST}.tmp"
    pointer.write_text(folder.name + "\n")
    os.replace(pointer, run_dir / LATEST)
    for old in run_dir.glob("checkpoint-*"):  # keep only the one `latest` names
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def load(
    folder: Path, model: torch.nn.Module, optimizers: dict, device: torch.device, schedulers: dict | None = None
) -> dict:
    """Restore model, optimizers and schedulers in place; returns the state (step, rng, counters)."""
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
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
