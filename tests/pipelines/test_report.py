import json

import pytest

from latentops.pipelines.report import markdown_table, write_report


def _run(folder, model, dataset="lines", **metrics):
    folder.mkdir(parents=True)
    summary = {"model": model, "dataset": dataset, "steps": 100, "images_per_s": 1234.5,
               "probe_accuracy": 0.5, "clustering_accuracy": 0.25, "test_mse": 0.01, **metrics}
    (folder / "metrics.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({"kind": "train", "step": s, "loss/mse": 1.0 / s}) + "\n" for s in (1, 2, 3)))
    return folder


def test_lines_table_follows_acai_table_1(tmp_path):
    runs = [_run(tmp_path / "a", "acai", mean_distance=0.0024, smoothness=0.1),
            _run(tmp_path / "b", "baseline", mean_distance=0.00688, smoothness=0.44)]
    text, md, png = write_report(runs)
    lines = text.splitlines()
    assert lines[2] == "| Metric | Baseline | ACAI |"  # the zoo's order, not the arguments'
    assert "| Mean Distance (×10⁻³) | 6.88 | 2.40 |" in lines
    assert "| Smoothness | 0.44 | 0.10 |" in lines
    assert "| Clustering accuracy (%) | 25.0 | 25.0 |" in lines
    assert md.read_text() == text and png.stat().st_size > 0 and png.parent == tmp_path


def test_other_datasets_get_accuracy_rows_and_runs_of_one_model_are_told_apart(tmp_path):
    runs = [_run(tmp_path / "ops", "vqvae", dataset="digits"),
            _run(tmp_path / "torch", "vqvae", dataset="digits")]
    text, _, _ = write_report(runs, tmp_path / "out")
    assert "Mean Distance" not in text
    assert "| Metric | VQ-VAE (ops) | VQ-VAE (torch) |" in text
    assert "| Single-layer classifier accuracy (%) | 50.0 | 50.0 |" in text


def test_a_run_without_metrics_is_named(tmp_path):
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        write_report([tmp_path / "unfinished"])
    with pytest.raises(ValueError, match="RUN_DIR"):
        write_report([])


def test_missing_values_show_as_a_dash(tmp_path):
    runs = [_run(tmp_path / "a", "vae", mean_distance=0.001, smoothness=None),
            _run(tmp_path / "b", "aae", mean_distance=0.001, smoothness=0.5)]
    loaded = [{"dir": run, "summary": json.loads((run / "metrics.json").read_text())} for run in runs]
    assert "| Smoothness | – | 0.50 |" in markdown_table(loaded)
