"""The runner is generic: a second task (toy_task.py, no autoencoder in sight) trains, resumes bit
for bit and is refused where a run would be overwritten or changed."""

import json

import pytest
import torch
from safetensors.torch import load_file

from latentops.pipelines import run

from .toy_task import ToyConfig, ToyTask, interrupt_at


def _config(out, **overrides) -> ToyConfig:
    settings = dict(out=str(out), steps=10, device="cpu", eval_every=5, checkpoint_every=4, progress=False)
    settings.update(overrides)
    return ToyConfig(**settings)


def _final(run_dir):
    folder = run_dir / (run_dir / "latest").read_text().strip()
    return load_file(str(folder / "model.safetensors")), torch.load(folder / "state.pt", weights_only=True)


def _records(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]


def test_a_toy_task_runs_through_the_runner(tmp_path):
    summary = run(ToyTask, _config(tmp_path / "toy"))
    assert json.loads((tmp_path / "toy" / "metrics.json").read_text()) == summary
    assert list(summary)[:4] == ["task", "model", "dataset", "lr"]  # the task's describe() follows "task"
    assert summary["task"] == "toy" and summary["steps"] == 10 and summary["batch_size"] == 8
    assert summary["weight_norm"] <= 0.8 + 1e-6  # after_step projected the weights each step
    assert isinstance(summary["test_loss"], float)
    kinds = [r["kind"] for r in _records(tmp_path / "toy")]
    assert kinds.count("train") == 10 and kinds.count("eval") == 2
    for name in ("config.json", "loss.png", "latest"):
        assert (tmp_path / "toy" / name).is_file(), name
    state = _final(tmp_path / "toy")[1]
    assert state["schedulers"]["linear"]["last_epoch"] == 10  # stepped once per training step


def test_an_interrupted_toy_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    run(ToyTask, _config(tmp_path / "straight"))

    undo = interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run(ToyTask, _config(tmp_path / "resumed"))
    undo()
    assert (tmp_path / "resumed" / "latest").read_text().strip() == "checkpoint-4"
    run(ToyTask, _config(tmp_path / "resumed", resume=True))

    (weights_a, state_a), (weights_b, state_b) = (_final(tmp_path / d) for d in ("straight", "resumed"))
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert state_a["schedulers"] == state_b["schedulers"]
    momentum_a = state_a["optimizers"]["linear"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum_a, state_b["optimizers"]["linear"]["state"][0]["momentum_buffer"])
    assert torch.equal(state_a["rng"][0]["torch"], state_b["rng"][0]["torch"])
    assert _records(tmp_path / "straight") == _records(tmp_path / "resumed")


def test_toy_runs_are_refused_like_any_other(tmp_path):
    run(ToyTask, _config(tmp_path / "a", steps=4))
    with pytest.raises(FileExistsError, match="--resume"):
        run(ToyTask, _config(tmp_path / "a", steps=4))
    with pytest.raises(ValueError, match="--noise"):  # the task's identity
        run(ToyTask, _config(tmp_path / "a", steps=6, noise=0.5, resume=True))
    with pytest.raises(ValueError, match="--batch-size"):  # the runner's
        run(ToyTask, _config(tmp_path / "a", steps=6, batch_size=4, resume=True))
    with pytest.raises(ValueError, match="--max-norm must be a number > 0"):
        run(ToyTask, _config(tmp_path / "b", max_norm=0.0))


def test_a_config_without_the_runners_options_is_named(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Partial:
        out: str

    with pytest.raises(TypeError, match="steps"):
        run(ToyTask, Partial(out=str(tmp_path)))
