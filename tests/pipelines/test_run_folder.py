"""The run folder trusts nothing it finds: a checkpoint that is changed, truncated or missing is
refused by name (never a silent restart or a traceback), a second run on the folder is refused while
the first holds its lock, and a run killed during a save resumes from the previous checkpoint as if
it had never been interrupted."""

import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from latentops.cli import main
from latentops.pipelines import run
from latentops.pipelines.checkpoint import CheckpointError
from latentops.pipelines.run_folder import RunFolder, RunFolderBusy

from .test_runner import _config, _final, _records
from .toy_task import ToyTask, interrupt_at


@pytest.fixture(autouse=True)
def _toy_command(monkeypatch):
    """`latentops toy` on the command line."""
    from latentops.pipelines.tasks import TASKS

    monkeypatch.setitem(TASKS, ToyTask.name, ToyTask)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 4-step toy run with its checkpoint at step 4; each test damages a copy."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    run(ToyTask, _config(folder, steps=4))
    return folder


@pytest.fixture
def copy(finished, tmp_path):
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _resume(folder, steps=6):
    return run(ToyTask, _config(folder, steps=steps, resume=True))


def _truncate(path, keep):
    with open(path, "r+b") as f:
        f.truncate(keep if keep >= 0 else os.path.getsize(path) + keep)


def _change_weights(checkpoint):
    """Rewrites model.safetensors with some weights changed: same size, a valid file."""
    path = checkpoint / "model.safetensors"
    tensors = load_file(str(path))
    tensors["linear.weight"][0, :3] += 1.0
    size = path.stat().st_size
    save_file(tensors, str(path))
    assert path.stat().st_size == size


# (how the folder is damaged, the file the error must name)
DAMAGES = {
    "weights changed": (_change_weights, "checkpoint-4/model.safetensors"),
    "model truncated": (lambda c: _truncate(c / "model.safetensors", -100), "checkpoint-4/model.safetensors"),
    "model empty": (lambda c: _truncate(c / "model.safetensors", 0), "checkpoint-4/model.safetensors"),
    "state truncated": (lambda c: _truncate(c / "state.pt", -1), "checkpoint-4/state.pt"),
    "state removed": (lambda c: (c / "state.pt").unlink(), "checkpoint-4/state.pt"),
    "manifest removed": (lambda c: (c / "manifest.json").unlink(), "checkpoint-4/manifest.json"),
    "manifest corrupted": (lambda c: _truncate(c / "manifest.json", 10), "checkpoint-4/manifest.json"),
    "checkpoint removed": (lambda c: shutil.rmtree(c), "checkpoint-4"),
    "latest garbage": (lambda c: (c.parent / "latest").write_bytes(b"\xff\x00../etc"), "latest"),
    "latest removed": (lambda c: (c.parent / "latest").unlink(), "latest"),
    "config removed": (lambda c: (c.parent / "config.json").unlink(), "config.json"),
    "config corrupted": (lambda c: (c.parent / "config.json").write_text('{"lr": 0.1,'), "config.json"),
    "metrics removed": (lambda c: (c.parent / "metrics.jsonl").unlink(), "metrics.jsonl"),
    "metrics truncated": (lambda c: _truncate(c.parent / "metrics.jsonl", 50), "metrics.jsonl"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_is_refused_by_name_not_restarted(copy, damage, capsys):
    spoil, named = DAMAGES[damage]
    spoil(copy / "checkpoint-4")
    untouched = sorted(p.name for p in copy.iterdir())
    with pytest.raises(ValueError, match=named) as error:
        _resume(copy)
    assert isinstance(error.value, CheckpointError) or "config" in named or "metrics" in named
    assert "start afresh" in str(error.value) or "--out" in str(error.value)
    assert sorted(p.name for p in copy.iterdir()) == untouched  # nothing was written
    # The command line: one line naming the file, status 2, no traceback.
    argv = ["toy", "--steps", "6", "--device", "cpu", "--no-progress", "--resume", "--out", str(copy)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentops toy: error: ") and named in err and err.count("\n") == 1


def test_the_damages_are_real(copy):
    """Undamaged, the copy resumes (so each refusal above is the damage's doing)."""
    assert _resume(copy)["steps"] == 6


def test_resume_on_a_folder_without_a_run_starts_fresh(tmp_path, capsys):
    assert _resume(tmp_path / "new", steps=4)["steps"] == 4
    assert capsys.readouterr().err == ""


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_at_step_0(tmp_path, capsys, monkeypatch):
    undo = interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(ToyTask, _config(tmp_path / "a", steps=4))
    undo()
    assert not (tmp_path / "a" / "latest").exists()
    _resume(tmp_path / "a", steps=4)
    assert "holds no checkpoint yet" in capsys.readouterr().err
    run(ToyTask, _config(tmp_path / "b", steps=4))
    assert _records(tmp_path / "a") == _records(tmp_path / "b")


def test_a_torn_last_record_is_dropped_on_resume(copy):
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "loss/f')  # an append cut short by a crash
    _resume(copy)
    assert [r["step"] for r in _records(copy) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_a_second_run_on_a_locked_folder_names_the_holder(copy, capsys):
    holder = RunFolder(copy)
    holder.lock()
    try:
        with pytest.raises(RunFolderBusy, match=f"in use by another run \\(pid {os.getpid()} on "):
            _resume(copy)
        argv = ["toy", "--steps", "6", "--device", "cpu", "--no-progress", "--resume", "--out", str(copy)]
        assert main(argv) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    finally:
        holder.unlock()
    assert _resume(copy)["steps"] == 6  # released, the folder is free again
    steps = [r["step"] for r in _records(copy) if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # no duplicated records


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--out", "file", "is a file"),
        ("--out", "file/run", "lies under"),
        ("--device", "tpu7", "--device must be auto, cpu, cuda or cuda:N, got 'tpu7'"),
        ("--device", "cuda", "--device cuda: this machine has no CUDA device"),
    ],
)
def test_bad_out_and_device_are_one_line(tmp_path, capsys, monkeypatch, option, value, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA
    (tmp_path / "file").write_text("")
    settings = {"--out": str(tmp_path / "run"), "--device": "cpu"}
    settings[option] = str(tmp_path / value) if option == "--out" else value
    argv = ["toy", "--steps", "2", "--no-progress", *(a for item in settings.items() for a in item)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentops toy: error: ") and message in err and err.count("\n") == 1


# -- a run killed during a save --------------------------------------------------------------


def _run_killed_during_save(point: str, out: str) -> None:
    """In a forked child (no second import of torch: seconds saved): the run of _config(out),
    SIGKILLed during the save of checkpoint-8 at `point`, a deterministic stand-in for a crash or
    an OOM kill mid-save. Patches made here stay in the child."""
    from latentops.pipelines import checkpoint

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    save_file, replace = checkpoint.save_file, os.replace

    def half_written_model(tensors, path):
        save_file(tensors, path)
        if "checkpoint-8" in path:
            _truncate(path, os.path.getsize(path) // 2)
            die()

    def pointer_not_yet_moved(src, dst):
        if Path(dst).name == "latest" and Path(src).read_text().strip() == "checkpoint-8":
            die()
        replace(src, dst)

    if point == "model":
        checkpoint.save_file = half_written_model
    else:
        os.replace = pointer_not_yet_moved
    try:
        run(ToyTask, _config(out))
    finally:
        os._exit(1)  # not killed: the test fails on the exit status


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight") / "run"
    run(ToyTask, _config(folder))
    return folder


@pytest.mark.parametrize("point", ["model", "latest"])
def test_a_run_killed_during_a_save_resumes_bit_for_bit(straight, tmp_path, point):
    folder = tmp_path / "killed"
    child = multiprocessing.get_context("fork").Process(target=_run_killed_during_save, args=(point, str(folder)))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert (folder / "latest").read_text().strip() == "checkpoint-4"  # the previous one, still in force
    if point == "latest":
        assert (folder / "checkpoint-8" / "manifest.json").is_file()  # complete, but never pointed at
    # The lock died with the process, and the resumed run is the uninterrupted one.
    run(ToyTask, _config(folder, resume=True))
    (weights_a, state_a), (weights_b, state_b) = _final(straight), _final(folder)
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert state_a["schedulers"] == state_b["schedulers"]
    assert torch.equal(state_a["rng"][0]["torch"], state_b["rng"][0]["torch"])
    assert _records(straight) == _records(folder)
    assert sorted(p.name for p in folder.iterdir() if "checkpoint" in p.name) == ["checkpoint-10"]


def test_a_checkpoint_lists_its_files_checksums(finished):
    manifest = json.loads((finished / "checkpoint-4" / "manifest.json").read_text())
    assert manifest["step"] == 4 and set(manifest["files"]) == {"model.safetensors", "state.pt"}
    size = (finished / "checkpoint-4" / "state.pt").stat().st_size
    assert manifest["files"]["state.pt"]["bytes"] == size and len(manifest["files"]["state.pt"]["sha256"]) == 64
