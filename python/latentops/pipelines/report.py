"""`latentops report RUN_DIR...`: the runs side by side in a markdown table (ACAI's Table 1 layout
on lines: one column per model, Mean Distance and Smoothness as rows) and one combined PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

from latentops.pipelines import plots
from latentops.pipelines.train import FRAMES_PNG

DISPLAY_NAMES = {"baseline": "Baseline", "dropout": "Dropout", "denoising": "Denoising",
                 "vae": "VAE", "aae": "AAE", "vqvae": "VQ-VAE", "softvq": "Soft-VQ", "acai": "ACAI"}
MODEL_ORDER = list(DISPLAY_NAMES)
# (key in metrics.json, row label, format); ACAI's Table 1 rows first on lines.
LINES_ROWS = [("mean_distance", "Mean Distance (×10⁻³)", lambda v: f"{1e3 * v:.2f}"),
              ("smoothness", "Smoothness", lambda v: f"{v:.2f}")]
COMMON_ROWS = [("probe_accuracy", "Single-layer classifier accuracy (%)", lambda v: f"{100 * v:.1f}"),
               ("clustering_accuracy", "Clustering accuracy (%)", lambda v: f"{100 * v:.1f}"),
               ("test_mse", "Test reconstruction MSE", lambda v: f"{v:.4f}"),
               ("images_per_s", "Training images/s", lambda v: f"{v:,.0f}"),
               ("steps", "Steps", lambda v: f"{v:,}")]


def load_run(run_dir) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"RUN_DIR {str(run_dir)!r} has no metrics.json: it is not a finished "
                                f"`latentops train` run (resume it with --resume to finish it)")
    summary = json.loads(path.read_text())
    records = []
    jsonl = run_dir / "metrics.jsonl"
    if jsonl.is_file():
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {"dir": run_dir, "summary": summary, "records": records}


def _column_names(runs: list[dict]) -> list[str]:
    names = [DISPLAY_NAMES.get(r["summary"]["model"], r["summary"]["model"]) for r in runs]
    # Two runs of one model (e.g. --backend ops and torch) are told apart by their folders.
    return [f"{name} ({run['dir'].name})" if names.count(name) > 1 else name
            for name, run in zip(names, runs)]


def _fmt(value, fmt) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt(value)


def markdown_table(runs: list[dict]) -> str:
    """One table per dataset, the runs as columns in the zoo's order."""
    sections = []
    datasets = sorted({r["summary"]["dataset"] for r in runs}, key=lambda d: (d != "lines", d))
    for dataset in datasets:
        group = [r for r in runs if r["summary"]["dataset"] == dataset]
        group.sort(key=lambda r: (MODEL_ORDER.index(r["summary"]["model"])
                                  if r["summary"]["model"] in MODEL_ORDER else len(MODEL_ORDER)))
        rows = (LINES_ROWS if dataset == "lines" else []) + COMMON_ROWS
        rows = [row for row in rows if any(r["summary"].get(row[0]) is not None for r in group)]
        header = ["Metric", *_column_names(group)]
        lines = [f"**{dataset}**", "", "| " + " | ".join(header) + " |",
                 "| --- |" + " ---: |" * len(group)]
        for key, label, fmt in rows:
            lines.append("| " + " | ".join([label, *(_fmt(r["summary"].get(key), fmt) for r in group)]) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def write_report(run_dirs, out_dir=None) -> tuple[str, Path, Path]:
    """Writes report.md and report.png to out_dir (default: the first run's parent folder);
    returns (markdown, md path, png path)."""
    if not run_dirs:
        raise ValueError("RUN_DIR: give at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else runs[0]["dir"].parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_table(runs)
    md_path, png_path = out / "report.md", out / "report.png"
    md_path.write_text(text)
    figure_runs = []
    for run, name in zip(runs, _column_names(runs)):
        frames = run["dir"] / FRAMES_PNG
        height = 32 if run["summary"]["dataset"] != "digits" else 8
        grid = plots.load_frames(frames, 2, height) if frames.is_file() else None
        figure_runs.append({"name": name, "grid": grid, "records": run["records"],
                            "summary": run["summary"]})
    lines_runs = all(r["summary"]["dataset"] == "lines" for r in runs)
    metrics = ([("mean_distance", "Mean Distance"), ("smoothness", "Smoothness")] if lines_runs else []) + \
        [("probe_accuracy", "classifier accuracy"), ("clustering_accuracy", "clustering accuracy")]
    metrics = [m for m in metrics if any(r["summary"].get(m[0]) is not None for r in runs)]
    plots.save_report_figure(figure_runs, metrics, png_path)
    return text, md_path, png_path
