"""`latentops classify`: the classifier task on the shared runner, from the command line to the
report; same-seed runs identical, an interrupted run resumed bit for bit, bad options named."""

import json

import pytest
import torch
from safetensors.torch import load_file

from latentops.cli import main
from latentops.data import load_dataset
from latentops.data.digits import load_digits
from latentops.pipelines import run
from latentops.pipelines.classifiers import ClassifierTask, ClassifyConfig, crop_flip


def _config(out, **overrides) -> ClassifyConfig:
    settings = dict(
        out=str(out), arch="mlp", train_per_class=5, steps=8, batch_size=10, device="cpu",
        eval_every=4, checkpoint_every=3, eval_batch=40, progress=False,
    )  # fmt: skip
    settings.update(overrides)
    return ClassifyConfig(**settings)


def _records(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]


def _weights(run_dir):
    folder = run_dir / (run_dir / "latest").read_text().strip()
    return load_file(str(folder / "model.safetensors"))


def test_the_command_trains_evaluates_and_reports(tmp_path, capsys):
    common = ["--train-per-class", "5", "--arch", "preact-small", "--steps", "6", "--batch-size", "10"]
    common += ["--eval-every", "3", "--eval-batch", "40", "--device", "cpu", "--no-progress"]
    assert main(["classify", *common, "--out", str(tmp_path / "v")]) == 0
    regularized = ["--smoothness", "0.01", "--parseval", "0.01", "--augment", "crop-flip"]
    assert main(["classify", *common, *regularized, "--out", str(tmp_path / "pr")]) == 0
    summary = json.loads((tmp_path / "pr" / "metrics.json").read_text())
    assert summary["task"] == "classifiers" and summary["variant"] == "PR" and summary["steps"] == 6
    assert 0 <= summary["test_accuracy"] <= 1 and summary["test_loss"] > 0
    assert len(summary["smoothness_per_layer"]) == 5  # preact-small's taps
    trains = [r for r in _records(tmp_path / "pr") if r["kind"] == "train"]
    assert all("loss/smoothness_variation" in r and "loss/ce" in r for r in trains)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "v"), str(tmp_path / "pr"), "--out", str(tmp_path)]) == 0
    table = (tmp_path / "report.md").read_text()
    assert "preact-small V" in table and "preact-small PR" in table and "Test accuracy (%)" in table


def test_same_seed_runs_are_identical_and_seeds_differ(tmp_path):
    options = dict(smoothness=0.01, parseval=0.01, augment="crop-flip")
    for name in ("a", "b"):
        run(ClassifierTask, _config(tmp_path / name, **options))
    run(ClassifierTask, _config(tmp_path / "c", seed=1, **options))
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    a, b, c = (_weights(tmp_path / name) for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_an_interrupted_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    options = dict(smoothness=0.01, parseval=0.01, augment="crop-flip", lr_milestones="0.5")
    run(ClassifierTask, _config(tmp_path / "straight", **options))
    original = ClassifierTask.batch

    def interrupted(self, step, rank, world):
        if step == 5:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, step, rank, world)

    monkeypatch.setattr(ClassifierTask, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(ClassifierTask, _config(tmp_path / "resumed", **options))
    monkeypatch.setattr(ClassifierTask, "batch", original)
    assert (tmp_path / "resumed" / "latest").read_text().strip() == "checkpoint-3"
    run(ClassifierTask, _config(tmp_path / "resumed", resume=True, **options))
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _records(tmp_path / "straight") == _records(tmp_path / "resumed")
    with pytest.raises(ValueError, match="--smoothness"):  # a resume must not change the run
        run(ClassifierTask, _config(tmp_path / "resumed", resume=True, **{**options, "smoothness": 0.1}))


def test_the_rate_drops_at_the_milestones(tmp_path):
    config = _config(tmp_path / "r", steps=10, lr=0.1, lr_milestones="0.3,0.6", lr_gamma=0.1)
    task = ClassifierTask(config)
    training = task.build(torch.device("cpu"))
    optimizer, schedule = training.optimizers["classifier"], training.schedulers["classifier"]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 4)


def test_epochs_set_the_steps(tmp_path):
    task = ClassifierTask(_config(tmp_path / "e", epochs=2.0, batch_size=10))
    assert task.config.steps == 10  # 2 epochs of 50 images in batches of 10


def test_geometry_targets_train_a_nearest_class_mean_classifier(tmp_path):
    summary = run(ClassifierTask, _config(tmp_path / "geo", loss="geo", steps=40, train_per_class=20, lr=0.05))
    assert summary["variant"] == "GEO" and "test_loss" not in summary
    assert summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(width=8.5), "--width"),  # the MLP's hidden layers take whole units
        (dict(arch="preact18", width=8.0), "--width"),  # PreActResNet18 has no width option
        (dict(lr_milestones="0.5,0.2"), "--lr-milestones"),
        (dict(lr_milestones="1.5"), "--lr-milestones"),
        (dict(smoothness=-1.0), "--smoothness"),
        (dict(dataset="lines", train_per_class=None, epochs=1.0), "--epochs"),
        (dict(dataset="mnist", data_dir="/nonexistent"), "train_per_class"),
    ],
)
def test_bad_options_are_named(tmp_path, overrides, flag):
    with pytest.raises(ValueError, match=flag):
        run(ClassifierTask, _config(tmp_path / "bad", **overrides))


def test_the_command_names_a_bad_option_in_one_line(tmp_path, capsys):
    assert main(["classify", "--arch", "preact18", "--width", "8", "--out", str(tmp_path / "w")]) == 2
    assert "--width" in capsys.readouterr().err


def test_crop_flip_takes_crops_of_the_padded_image_and_flips_some():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 8, 6) * 2 - 1
    out = crop_flip(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)
    flipped = 0
    for image, source in zip(out, padded):
        crops = [source[:, dy : dy + 8, dx : dx + 6] for dy in range(3) for dx in range(3)]
        same = any(torch.equal(image, crop) for crop in crops)
        mirrored = any(torch.equal(image, crop.flip(2)) for crop in crops)
        assert same or mirrored
        flipped += mirrored and not same
    assert 16 < flipped < 48  # about half


def test_digits_split_per_class():
    data = load_digits(train_per_class=30)
    assert torch.equal(data.train_labels.bincount(), torch.full((10,), 30))
    assert len(data.train_labels) + len(data.test_labels) == 1797
    assert len(load_dataset("digits").test_labels) == 297  # the default split
    for bad in (0, 174, True, 2.5):
        with pytest.raises(ValueError, match="train_per_class"):
            load_digits(train_per_class=bad)
