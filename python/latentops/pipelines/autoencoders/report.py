"""How `latentops report` shows the zoo: ACAI's Table 1 layout on lines (one column per model in
the zoo's order, Mean Distance and Smoothness first), an interpolation strip per run."""

from __future__ import annotations

from latentops.pipelines import plots
from latentops.pipelines.task import Row, TaskReport

FRAMES_PNG = "interpolation-frames.png"  # what each evaluation draws and the report reads back
DISPLAY_NAMES = {
    "baseline": "Baseline",
    "dropout": "Dropout",
    "denoising": "Denoising",
    "vae": "VAE",
    "vae-acai": "VAE (ACAI's)",
    "aae": "AAE",
    "vqvae": "VQ-VAE",
    "vqvae-acai": "VQ-VAE (ACAI's)",
    "softvq": "Soft-VQ",
    "softvq-paper": "Soft-VQ (paper)",
    "acai": "ACAI",
}
MODEL_ORDER = list(DISPLAY_NAMES)
LINES_ROWS = [
    Row("mean_distance", "Mean Distance (×10⁻³)", lambda v: f"{1e3 * v:.2f}"),
    Row("smoothness", "Smoothness", lambda v: f"{v:.2f}"),
    Row("interpolation_evaluations", "Mean Distance, Smoothness: median of the last … evaluations", str),
    Row("degenerate_pairs", "Smoothness: pairs with no rotation (last evaluation)", str),
    # Which definition each column used (`latentops train --help`; ACAI's are "acai" and "random").
    Row("mean_distance_definition", "Mean Distance defined as", str),
    Row("smoothness_degenerate", "Smoothness: a pair with no rotation scores as", str),
    Row("interpolation_pairs", "Interpolation pairs", str),
]
ROWS = [
    Row("probe_accuracy", "Single-layer classifier accuracy (%)", lambda v: f"{100 * v:.1f}"),
    Row("classifier_definition", "Classifier trained", str),
    Row("clustering_accuracy", "Clustering accuracy (%)", lambda v: f"{100 * v:.1f}"),
    Row("clustering_definition", "Clustering defined as", str),
    Row("test_mse", "Test reconstruction MSE", lambda v: f"{v:.4f}"),
]


class AutoencoderReport(TaskReport):
    loss = ("mse", "reconstruction MSE")
    keys = ("model", "dataset")

    def section_order(self, dataset: str):
        return (dataset != "lines", dataset)

    def rows(self, dataset: str) -> list[Row]:
        return (LINES_ROWS if dataset == "lines" else []) + ROWS

    def column(self, summary: dict) -> str:
        return DISPLAY_NAMES.get(summary["model"], summary["model"])

    def column_order(self, summary: dict):
        model = summary["model"]
        return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)

    def figure_metrics(self, summaries: list[dict]) -> list[tuple[str, str]]:
        lines_only = all(s["dataset"] == "lines" for s in summaries)
        return ([("mean_distance", "Mean Distance"), ("smoothness", "Smoothness")] if lines_only else []) + [
            ("probe_accuracy", "classifier accuracy"),
            ("clustering_accuracy", "clustering accuracy"),
        ]

    def strip(self, run_dir, summary: dict):
        frames = run_dir / FRAMES_PNG
        height = 32 if summary["dataset"] != "digits" else 8
        return plots.load_frames(frames, 2, height) if frames.is_file() else None
