import json
import re
import shutil

import pytest

from latentops.cli import main
from latentops.pipelines.report import markdown_table, write_report


def _run(folder, model, dataset="lines", **metrics):
    folder.mkdir(parents=True)
    summary = {
        "model": model,
        "dataset": dataset,
        "steps": 100,
        "images_per_s": 1234.5,
        "probe_accuracy": 0.5,
        "clustering_accuracy": 0.25,
        "test_mse": 0.01,
        **metrics,
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({"kind": "train", "step": s, "loss/mse": 1.0 / s}) + "\n" for s in (1, 2, 3))
    )
    return folder


def test_lines_table_follows_acai_table_1(tmp_path):
    runs = [
        _run(tmp_path / "a", "acai", mean_distance=0.0024, smoothness=0.1),
        _run(tmp_path / "b", "baseline", mean_distance=0.00688, smoothness=0.44),
    ]
    text, md, png = write_report(runs)
    lines = text.splitlines()
    assert lines[2] == "| Metric | Baseline | ACAI |"  # the zoo's order, not the arguments'
    assert "| Mean Distance (×10⁻³) | 6.88 | 2.40 |" in lines
    assert "| Smoothness | 0.44 | 0.10 |" in lines
    assert "| Clustering accuracy (%) | 25.0 | 25.0 |" in lines
    assert md.read_text() == text and png.stat().st_size > 0 and png.parent == tmp_path


def test_other_datasets_get_accuracy_rows_and_runs_of_one_model_are_told_apart(tmp_path):
    runs = [_run(tmp_path / "ops", "vqvae", dataset="digits"), _run(tmp_path / "torch", "vqvae", dataset="digits")]
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
    runs = [
        _run(tmp_path / "a", "vae", mean_distance=0.001, smoothness=None),
        _run(tmp_path / "b", "aae", mean_distance=0.001, smoothness=0.5),
    ]
    loaded = [{"dir": run, "summary": json.loads((run / "metrics.json").read_text())} for run in runs]
    assert "| Smoothness | – | 0.50 |" in markdown_table(loaded)


@pytest.fixture
def toy_registered(monkeypatch):
    from latentops.pipelines.tasks import TASKS

    from .toy_task import ToyTask

    monkeypatch.setitem(TASKS, ToyTask.name, ToyTask)
    return ToyTask


def test_runs_of_two_tasks_get_a_table_each_with_their_own_rows(tmp_path, toy_registered):
    from latentops.pipelines import run

    from .test_runner import _config

    for lr in (0.1, 0.05):
        run(toy_registered, _config(tmp_path / f"toy-{lr}", lr=lr))
    zoo = [
        _run(tmp_path / "acai", "acai", mean_distance=0.0024, smoothness=0.1),
        _run(tmp_path / "baseline", "baseline", mean_distance=0.00688, smoothness=0.44),
    ]
    text, _, png = write_report([tmp_path / "toy-0.1", *zoo, tmp_path / "toy-0.05"], tmp_path / "out")
    lines, toy = text.split("\n\n**toy regression on toy**\n\n")
    # The zoo's table is the one a report of the zoo alone prints (the tasks' registry order).
    assert lines + "\n" == write_report(zoo, tmp_path / "zoo")[0]
    toy = toy.splitlines()
    assert toy[0] == "| Metric | toy lr=0.1 | toy lr=0.05 |"
    assert [row.split(" |")[0] for row in toy[2:]] == ["| Test loss", "| Weight norm", "| Training images/s", "| Steps"]
    assert "Mean Distance" not in "\n".join(toy)
    assert png.stat().st_size > 0


def test_a_run_of_an_unknown_task_is_named(tmp_path):
    folder = _run(tmp_path / "future", "resnet", task="classification")
    with pytest.raises(ValueError, match="'classification'"):
        write_report([folder])


@pytest.mark.parametrize(
    "spoil, named",
    [
        (lambda d: (d / "metrics.json").write_text('{"model": "vae", '), "metrics.json' is corrupted: not JSON"),
        (lambda d: (d / "metrics.json").write_text("[1, 2]"), "metrics.json' is corrupted: it holds a list"),
        (lambda d: (d / "metrics.json").write_bytes(b"\xff\xfe"), "metrics.json' is corrupted"),
        (
            lambda d: (d / "metrics.json").write_text('{"dataset": "lines"}'),
            "metrics.json' is corrupted: it lacks model",
        ),
        (lambda d: (d / "metrics.json").write_text('{"task": 3, "model": "vae"}'), "task 3"),
        (
            lambda d: (d / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr\n{}'),
            "line 2 is not JSON",
        ),
        (lambda d: (d / "metrics.jsonl").write_text('{"kind": "train"}\n'), "line 1 is not a metrics record"),
        (lambda d: (d / "metrics.jsonl").write_bytes(b"\x00\xff\n"), "metrics.jsonl' is corrupted"),
        (lambda d: shutil.rmtree(d), "is not a folder"),
        (lambda d: (d / "interpolation-frames.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20)), "frames.png' is"),
    ],
)
def test_a_corrupted_run_is_named_in_one_line(tmp_path, capsys, spoil, named):
    good = _run(tmp_path / "good", "vae")
    bad = _run(tmp_path / "bad", "aae")
    spoil(bad)
    with pytest.raises(ValueError if "folder" not in named else FileNotFoundError, match=re.escape(named)):
        write_report([good, bad], tmp_path / "out")
    assert main(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentops report: error: ") and named in err and err.count("\n") == 1


def test_a_run_without_records_still_has_its_column(tmp_path):
    (_run(tmp_path / "a", "vae") / "metrics.jsonl").unlink()
    assert "| Metric | VAE |" in write_report([tmp_path / "a"])[0]


def test_a_torn_last_record_is_what_a_crash_leaves_and_is_read_past(tmp_path):
    run = _run(tmp_path / "a", "vae")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')
    assert "| Metric | VAE |" in write_report([run])[0]


def test_seeds_of_a_model_are_summarized_and_paired_with_the_baseline(tmp_path):
    import numpy as np
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    base, gain = rng.uniform(0.5, 0.6, 6), rng.uniform(0.01, 0.1, 6)
    runs = []
    for seed in range(6):
        for model, clustering in (("baseline", base[seed]), ("softvq", base[seed] + gain[seed])):
            folder = _run(tmp_path / f"{model}-{seed}", model, dataset="digits", clustering_accuracy=clustering)
            (folder / "config.json").write_text(json.dumps({"seed": seed}))
            runs.append(folder)
    runs.append(_run(tmp_path / "vae-0", "vae", dataset="digits", clustering_definition="acai"))
    (tmp_path / "vae-0" / "config.json").write_text(json.dumps({"seed": 0}))
    text, _, _ = write_report(runs, tmp_path / "out")
    assert "over seeds (Baseline: 6, VAE: 1, Soft-VQ: 6)" in text
    q1, median, q3 = np.percentile(base * 100, [25, 50, 75])
    assert f"| Clustering accuracy (%) | {median:.1f} [{q1:.1f}, {q3:.1f}] |" in text
    assert "| Clustering defined as | – | acai | – |" in text
    p = wilcoxon(gain).pvalue
    assert f"| {100 * np.median(gain):+.1f} (p = {p:.3g}, n = 6) |" in text  # Soft-VQ − Baseline, paired
    # Without seeds (e.g. the same model under --backend ops and torch): a column per run.
    plain = [_run(tmp_path / "x" / b, "vqvae", dataset="digits") for b in ("ops", "torch")]
    assert "VQ-VAE (ops)" in write_report(plain, tmp_path / "out2")[0]
