"""`latentops train` and `latentops report` end to end on a tiny run."""

import json
import subprocess
import sys

import pytest

from latentops.cli import main

TINY = ["--steps", "4", "--batch-size", "8", "--depth", "2", "--latent", "2", "--lr", "1e-3",
        "--device", "cpu", "--eval-every", "2", "--log-every", "2", "--eval-pairs", "4",
        "--eval-images", "32", "--kmeans-restarts", "2", "--probe-images", "100", "--no-progress"]


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
    result = subprocess.run([sys.executable, "-m", "latentops", "train", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "torchrun" in result.stdout
