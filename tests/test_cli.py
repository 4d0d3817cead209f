"""`latentops train` and `latentops report` end to end on a tiny run; the subcommands' options made
from their tasks' configs."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import latentops
from latentops.cli import _parser, main
from latentops.pipelines import TrainConfig
from latentops.pipelines.tasks import TASKS

TINY = [
    "--steps",
    "4",
    "--batch-size",
    "8",
    "--depth",
    "2",
    "--latent",
    "2",
    "--lr",
    "1e-3",
    "--device",
    "cpu",
    "--eval-every",
    "2",
    "--log-every",
    "2",
    "--eval-pairs",
    "4",
    "--eval-images",
    "32",
    "--kmeans-restarts",
    "2",
    "--cluster-images",
    "100",
    "--probe-images",
    "100",
    "--no-progress",
]


def test_train_then_report(tmp_path, capsys):
    runs = []
    for model in ("baseline", "softvq"):
        out = tmp_path / model
        assert main(["train", "--model", model, "--dataset", "lines", *TINY, "--out", str(out)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["model"] == model and summary["steps"] == 4
        runs.append(str(out))
    assert main(["report", *runs, "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "| Metric | Baseline | Soft-VQ |" in printed
    assert "Mean Distance" in printed and "Smoothness" in printed
    assert (tmp_path / "report" / "report.png").is_file()
    assert (tmp_path / "report" / "report.md").read_text() in printed


def test_train_on_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "digits"
    assert main(["train", "--model", "vqvae", "--dataset", "digits", *TINY, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "mean_distance" not in summary and 0 <= summary["probe_accuracy"] <= 1


def test_errors_name_the_argument(tmp_path, capsys):
    assert main(["train", "--model", "baseline", "--steps", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["train", "--model", "baseline", "--dataset", "mnist", "--out", str(tmp_path / "a")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--model", "gan", "--out", str(tmp_path / "a")])
    assert "--model" in capsys.readouterr().err


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "latentops", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--resume" in result.stdout and "torchrun" in result.stdout


def test_train_options_are_the_configs_fields_with_its_defaults():
    args = vars(_parser().parse_args(["train", "--model", "acai", "--out", "runs/a"]))
    assert args.pop("command") == "train"
    assert args == dataclasses.asdict(TrainConfig(model="acai", out="runs/a"))


def test_every_field_is_an_option_and_switches_flip_the_default():
    argv = [
        "train",
        "--model",
        "vqvae",
        "--out",
        "o",
        "--dataset",
        "digits",
        "--data-dir",
        "d",
        "--steps",
        "7",
        "--batch-size",
        "4",
        "--latent",
        "3",
        "--depth",
        "5",
        "--scales",
        "2",
        "--lr",
        "0.5",
        "--device",
        "cpu",
        "--backend",
        "torch",
        "--threads",
        "1",
        "--seed",
        "9",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "3",
        "--log-every",
        "1",
        "--eval-pairs",
        "6",
        "--interpolation-pairs",
        "turns",
        "--mean-distance",
        "strokes",
        "--smoothness-degenerate",
        "worst",
        "--model-option",
        "beta=2",
        "--eval-images",
        "8",
        "--clustering",
        "test",
        "--kmeans-restarts",
        "2",
        "--cluster-images",
        "50",
        "--classifier",
        "lbfgs",
        "--probe-images",
        "10",
        "--no-downstream",
        "--resume",
        "--no-progress",
    ]
    args = vars(_parser().parse_args(argv))
    args.pop("command")
    config = TrainConfig(**args)
    defaults = TrainConfig(model="baseline", out="")
    changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(defaults, f.name)}
    assert changed == {f.name for f in dataclasses.fields(TrainConfig)}
    assert (config.steps, config.lr, config.scales, config.data_dir) == (7, 0.5, 2, "d")


def test_a_task_in_the_registry_gets_its_subcommand(tmp_path, capsys, monkeypatch):
    from pipelines.toy_task import ToyTask

    monkeypatch.setitem(TASKS, ToyTask.name, ToyTask)
    out = tmp_path / "toy"
    assert main(["toy", "--steps", "3", "--lr", "0.05", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "toy" and summary["steps"] == 3 and summary["lr"] == 0.05
    assert main(["toy", "--max-norm", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "latentops toy: error: --max-norm must be a number > 0, got -1.0" in capsys.readouterr().err
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "| Metric | toy lr=0.05 |" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"latentops {latentops.__version__} (torch {torch.__version__}; ")
    with pytest.raises(SystemExit):  # also where argparse sees it, after other options
        _parser().parse_args(["-V"])
    assert "backends here: " in capsys.readouterr().out


def test_commands_without_the_pipelines_extra_say_what_to_install():
    # matplotlib stands for any of the pipelines extra's packages; None in sys.modules blocks an import.
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from latentops.cli import main; sys.exit(main(['train', '--help']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "pip install 'latentops[pipelines]'" in result.stderr and "matplotlib" in result.stderr
