"""`latentops report RUN_DIR...`: finished runs side by side, in one markdown table per task and
dataset (runs as columns, metrics as rows) and one combined PNG. Each run's task (the summary's
"task", looked up in pipelines/tasks.py) says which rows, column names and pictures it has."""

from __future__ import annotations

import math
from pathlib import Path

from latentops.pipelines import plots
from latentops.pipelines.run_folder import METRICS_JSON, METRICS_JSONL, read_json_object, read_jsonl
from latentops.pipelines.task import Row, Task
from latentops.pipelines.tasks import DEFAULT, TASKS

# The runner's own summary keys, below every task's rows.
RUN_ROWS = [Row("images_per_s", "Training images/s", lambda v: f"{v:,.0f}"), Row("steps", "Steps", lambda v: f"{v:,}")]


def load_run(run_dir) -> dict:
    """A finished run's summary and records; FileNotFoundError / ValueError naming the folder or
    file that is missing or corrupted."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"RUN_DIR {str(run_dir)!r} is not a folder")
    path = run_dir / METRICS_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"RUN_DIR {str(run_dir)!r} has no metrics.json: it is not a finished "
            f"`latentops train` run (resume it with --resume to finish it)"
        )
    summary = read_json_object(path)
    jsonl = run_dir / METRICS_JSONL
    # The records only draw the loss curves: a run without them still has its table column. A
    # torn last line is what a crash during an append leaves (a --resume of a finished run).
    records = read_jsonl(jsonl, allow_torn_end=True) if jsonl.is_file() else []
    return {"dir": run_dir, "summary": summary, "records": records}


def _task(run: dict) -> type[Task]:
    name = run["summary"].get("task", DEFAULT)
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(
            f"RUN_DIR {str(run['dir'])!r} is a run of the task {name!r}, which this "
            f"latentops does not know (it knows {tuple(TASKS)})"
        )
    task = TASKS[name]
    missing = [key for key in task.report.keys if key not in run["summary"]]
    if missing:
        raise ValueError(f"{str(run['dir'] / METRICS_JSON)!r} is corrupted: it lacks {', '.join(missing)}")
    return task


def _column_names(runs: list[dict]) -> list[str]:
    names = [_task(r).report.column(r["summary"]) for r in runs]
    # Two runs of one model (e.g. --backend ops and torch) are told apart by their folders.
    return [f"{name} ({run['dir'].name})" if names.count(name) > 1 else name for name, run in zip(names, runs)]


def _fmt(value, fmt) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt(value)


def _sections(runs: list[dict]) -> list[tuple[type[Task], str, list[dict]]]:
    """(task, dataset, its runs in the task's column order), in the tasks' and datasets' order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((_task(run).name, run["summary"].get("dataset", "")), []).append(run)
    order = list(TASKS)
    keys = sorted(groups, key=lambda k: (order.index(k[0]), TASKS[k[0]].report.section_order(k[1])))
    return [
        (
            TASKS[name],
            dataset,
            sorted(groups[name, dataset], key=lambda r: TASKS[name].report.column_order(r["summary"])),
        )
        for name, dataset in keys
    ]


def markdown_table(runs: list[dict], out: Path | None = None) -> str:
    """One section per (task, dataset): a column per run, or the task's aggregate of its runs
    (written with its figures to `out`, when given)."""
    sections = []
    for task, dataset, group in _sections(runs):
        aggregated = task.report.aggregate(dataset, group, out) if out is not None else None
        if aggregated is not None:
            sections.append(f"**{task.report.section(dataset)}**\n\n{aggregated}")
            continue
        rows = [
            row
            for row in task.report.rows(dataset) + RUN_ROWS
            if any(r["summary"].get(row.key) is not None for r in group)
        ]
        header = ["Metric", *_column_names(group)]
        lines = [
            f"**{task.report.section(dataset)}**",
            "",
            "| " + " | ".join(header) + " |",
            "| --- |" + " ---: |" * len(group),
        ]
        for row in rows:
            cells = (_fmt(r["summary"].get(row.key), row.format) for r in group)
            lines.append("| " + " | ".join([row.label, *cells]) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _figure_metrics(runs: list[dict]) -> list[tuple[str, str]]:
    """Each task's bar charts for its runs, in the order the tasks first appear; those no run has
    a value for are left out."""
    metrics: list[tuple[str, str]] = []
    for task in dict.fromkeys(_task(r) for r in runs):
        summaries = [r["summary"] for r in runs if _task(r) is task]
        metrics += [m for m in task.report.figure_metrics(summaries) if m not in metrics]
    return [m for m in metrics if any(r["summary"].get(m[0]) is not None for r in runs)]


def write_report(run_dirs, out_dir=None) -> tuple[str, Path, Path]:
    """Writes report.md and report.png to out_dir (default: the first run's parent folder);
    returns (markdown, md path, png path)."""
    if not run_dirs:
        raise ValueError("RUN_DIR: give at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else runs[0]["dir"].parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_table(runs, out)
    md_path, png_path = out / "report.md", out / "report.png"
    md_path.write_text(text)
    figure_runs = []
    for run, name in zip(runs, _column_names(runs)):
        report = _task(run).report
        figure_runs.append(
            {
                "name": name,
                "grid": report.strip(run["dir"], run["summary"]),
                "records": run["records"],
                "summary": run["summary"],
                "loss": report.loss[0] if report.loss else None,
            }
        )
    loss_titles = dict.fromkeys(_task(r).report.loss[1] for r in runs if _task(r).report.loss)
    plots.save_report_figure(figure_runs, _figure_metrics(runs), png_path, " / ".join(loss_titles))
    return text, md_path, png_path
