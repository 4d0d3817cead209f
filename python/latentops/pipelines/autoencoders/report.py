"""How `latentops report` shows the zoo: ACAI's Table 1 layout on lines (one column per model in
the zoo's order, Mean Distance and Smoothness first), an interpolation strip per run."""

from __future__ import annotations

from latentops.pipelines import plots
from latentops.pipelines.run_folder import CONFIG_JSON, read_json_object
from latentops.pipelines.statistics import paired, quartiles
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

# The rows summarized over seeds, with the scale and decimals of their cells (as the rows print).
SEED_SCALES = {
    "mean_distance": (1e3, 2),
    "smoothness": (1.0, 2),
    "probe_accuracy": (100.0, 1),
    "clustering_accuracy": (100.0, 1),
    "test_mse": (1.0, 4),
}


def _seed(run: dict) -> int | None:
    path = run["dir"] / CONFIG_JSON
    return read_json_object(path).get("seed") if path.is_file() else None


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

    def aggregate(self, dataset: str, runs: list[dict], out) -> str | None:
        """With several seeds of a model (each run's config.json): each metric's median [quartiles]
        over the seeds of each model, and each model's difference from the baseline paired by seed
        (two-sided Wilcoxon), in place of a column per run."""
        keys = [(run["summary"]["model"], _seed(run)) for run in runs]
        # Aggregated only when every run has a seed, no (model, seed) twice, and some model several.
        if (
            any(seed is None for _, seed in keys)
            or len(set(keys)) < len(runs)
            or len({m for m, _ in keys}) == len(runs)
        ):
            return None
        by_model: dict[str, dict[int, dict]] = {}
        for (model, seed), run in zip(keys, runs):
            by_model.setdefault(model, {})[seed] = run["summary"]
        models = list(by_model)
        names = [self.column(next(iter(by_model[m].values()))) for m in models]
        rows = [
            row
            for row in self.rows(dataset)
            if any(row.key in s for seeds in by_model.values() for s in seeds.values())
        ]

        def values(model: str, key: str) -> dict[int, float]:
            return {seed: s[key] for seed, s in by_model[model].items() if s.get(key) is not None}

        lines = [
            "Median [first quartile, third quartile] over seeds ("
            + ", ".join(f"{name}: {len(by_model[m])}" for name, m in zip(names, models))
            + ")",
            "",
            "| Metric | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(models),
        ]
        for row in rows:
            if row.key in SEED_SCALES:
                cells = [quartiles(values(m, row.key).values(), *SEED_SCALES[row.key]) for m in models]
            else:  # a definition: the values the seeds used
                cells = [" / ".join(dict.fromkeys(str(v) for v in values(m, row.key).values())) or "–" for m in models]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        others = [(m, name) for m, name in zip(models, names) if m != "baseline"]
        if "baseline" in by_model and others:
            lines += [
                "",
                "Paired by seed, each model minus Baseline: median difference (in the row's units) and the "
                "two-sided Wilcoxon signed-rank p-value",
                "",
                "| Metric | " + " | ".join(name for _, name in others) + " |",
                "| --- |" + " ---: |" * len(others),
            ]
            for row in rows:
                if row.key in SEED_SCALES:
                    cells = [
                        paired(values(m, row.key), values("baseline", row.key), *SEED_SCALES[row.key])
                        for m, _ in others
                    ]
                    lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
