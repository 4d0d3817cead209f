"""How `latentops report` shows classifier runs: one column per run (its architecture and variant:
V vanilla, P Parseval, R smoothness-regularized, PR both, GEO geometry targets)."""

from __future__ import annotations

from latentops.pipelines.statistics import paired, quartiles
from latentops.pipelines.task import Row, TaskReport

ROWS = [
    Row("test_accuracy", "Test accuracy (%)", lambda v: f"{100 * v:.2f}"),
    Row("test_loss", "Test cross-entropy", lambda v: f"{v:.4f}"),
]
VARIANT_ORDER = ["V", "P", "R", "PR", "GEO", "alone", "hkd", "rkd", "lgg", "hkd+lgg"]


def variant_rank(name: str) -> int:
    return VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER)


def variant(config: dict) -> str:
    """V, P, R, PR (the Laplacian-networks authors' names) or GEO, from a run's config."""
    if config.get("loss") == "geo":
        return "GEO"
    label = ("P" if config.get("parseval", 0) > 0 else "") + ("R" if config.get("smoothness", 0) > 0 else "")
    return label or "V"


class ClassifierReport(TaskReport):
    loss = ("classifier", "training loss")
    keys = ("arch", "dataset", "variant")

    def rows(self, dataset: str) -> list[Row]:
        return ROWS

    def column(self, summary: dict) -> str:
        return f"{summary['arch']} {summary['variant']}"

    def column_order(self, summary: dict):
        return variant_rank(summary["variant"])

    def figure_metrics(self, summaries: list[dict]) -> list[tuple[str, str]]:
        return [("test_accuracy", "test accuracy")]

    def aggregate(self, dataset: str, runs: list[dict], out) -> str | None:
        """With several seeds of a variant: statistics over seeds (per architecture) and their
        figures, in place of one column per run."""
        if len({(r["summary"]["arch"], r["summary"]["variant"]) for r in runs}) == len(runs):
            return None
        sections = []
        for arch in dict.fromkeys(r["summary"]["arch"] for r in runs):
            group = [r for r in runs if r["summary"]["arch"] == arch]
            stats = SeedStatistics(group)
            stem = f"{arch}-{dataset}"
            figures = stats.figures(out, stem, group)
            sections.append(
                stats.markdown(f"{arch} on {dataset}", dataset)
                + "\n\nFigures: "
                + ", ".join(f"[{name}]({name})" for name in figures)
            )
        return "\n\n".join(sections)


class DistillationReport(ClassifierReport):
    """Students, under their own heading (a report of a teacher and its students has both)."""

    def section(self, dataset: str) -> str:
        return f"{dataset}, distilled students"


# The Laplacian-networks authors' stored medians over 10 seeds on CIFAR-10 (PreActResNet18, accuracy
# %), printed beside CIFAR-10 runs; keys are the suite's perturbation names.
AUTHORS_CIFAR10 = {
    "clean": {"V": 88.1, "P": 89.7, "R": 86.9, "PR": 87.3},
    "noise σ=0.1": {"V": 34.9, "P": 33.7, "R": 43.6, "PR": 50.0},
    "PGD ε=0.01": {"V": 1.2, "R": 11.5},
    "dropout p=0.25": {"V": 53.8, "R": 73.4},
    "5-bit weights": {"V": 23.9, "R": 49.5},
}


def _run_metrics(run: dict) -> tuple[int | None, dict[str, float]]:
    """(seed, {metric: accuracy}) of a run: clean test accuracy and, where the run has a
    robustness.json, each perturbation's mean accuracy over its draws."""
    from latentops.pipelines.classifiers.robustness_suite import ROBUSTNESS_JSON
    from latentops.pipelines.run_folder import CONFIG_JSON, read_json_object

    config_path = run["dir"] / CONFIG_JSON
    seed = read_json_object(config_path).get("seed") if config_path.is_file() else None
    metrics = {"clean": run["summary"].get("test_accuracy")}
    path = run["dir"] / ROBUSTNESS_JSON
    if path.is_file():
        results = read_json_object(path).get("results", {})
        for name, result in results.items():
            if name != "clean":
                metrics[name] = sum(result["accuracy"]) / len(result["accuracy"])
    return seed, {k: v for k, v in metrics.items() if v is not None}


class SeedStatistics:
    """The runs of one (architecture, dataset) grouped by variant, each variant's runs by seed."""

    def __init__(self, runs: list[dict]):
        self.by_variant: dict[str, dict[int, dict[str, float]]] = {}
        for run in runs:
            seed, metrics = _run_metrics(run)
            self.by_variant.setdefault(run["summary"]["variant"], {})[seed] = metrics
        self.variants = sorted(self.by_variant, key=variant_rank)
        names = dict.fromkeys(m for seeds in self.by_variant.values() for ms in seeds.values() for m in ms)
        self.metrics = list(names)

    def values(self, variant: str, metric: str) -> dict[int, float]:
        return {s: m[metric] for s, m in self.by_variant[variant].items() if metric in m}

    def markdown(self, title: str, dataset: str) -> str:
        seeds = {v: len(self.by_variant[v]) for v in self.variants}
        lines = [
            f"**{title}**: test accuracy (%), median [first quartile, third quartile] over seeds "
            f"({', '.join(f'{v}: {n}' for v, n in seeds.items())})",
            "",
            "| Metric | " + " | ".join(self.variants) + " |",
            "| --- |" + " ---: |" * len(self.variants),
        ]
        for metric in self.metrics:
            cells = [quartiles(list(self.values(v, metric).values())) for v in self.variants]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        baseline = next(
            (b for b in ("V", "alone") if b in self.variants), None
        )  # the variant without a regularizer or teacher
        pairs = [(v, baseline) for v in self.variants if baseline and v != baseline]
        if {"PR", "R"} <= set(self.variants):
            pairs.append(("PR", "R"))
        if pairs:
            lines += [
                "",
                "Paired by seed: median difference (points) and the two-sided Wilcoxon signed-rank p-value",
                "",
                "| Metric | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |",
                "| --- |" + " ---: |" * len(pairs),
            ]
            for metric in self.metrics:
                cells = [paired(self.values(a, metric), self.values(b, metric)) for a, b in pairs]
                lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        if dataset == "cifar10":
            lines += ["", "The authors' medians on CIFAR-10 (PreActResNet18, 10 seeds):", ""]
            lines += ["| Metric | V | P | R | PR |", "| --- | ---: | ---: | ---: | ---: |"]
            for metric, values in AUTHORS_CIFAR10.items():
                lines.append(
                    f"| {metric} | " + " | ".join(str(values.get(v, "–")) for v in ("V", "P", "R", "PR")) + " |"
                )
        return "\n".join(lines)

    def figures(self, out, stem: str, runs: list[dict]) -> list[str]:
        """Box plots per perturbation, accuracy against the noise's SNR, and the per-layer label
        smoothness of the last evaluation (median over seeds); returns the files written."""
        import re

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        written = []

        def save(fig, name: str) -> None:
            fig.tight_layout()
            fig.savefig(out / f"{stem}-{name}.png", dpi=90)
            plt.close(fig)
            written.append(f"{stem}-{name}.png")

        cols = min(5, len(self.metrics))
        rows = -(-len(self.metrics) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.5, 2.8 * rows), squeeze=False)
        for ax in axes.flat[len(self.metrics) :]:
            ax.axis("off")
        for ax, metric in zip(axes.flat, self.metrics):
            data = [[100 * x for x in self.values(v, metric).values()] for v in self.variants]
            ax.boxplot(data, tick_labels=self.variants)
            ax.set_title(metric, fontsize=8)
            ax.tick_params(labelsize=7)
        for row in axes:
            row[0].set_ylabel("test accuracy (%)")
        save(fig, "robustness-box")

        snr_metrics = [
            (float(m.group(1)), name) for name in self.metrics if (m := re.fullmatch(r"noise (-?[\d.]+) dB", name))
        ]
        if snr_metrics:
            snr_metrics.sort()
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for v in self.variants:
                medians = [100 * np.median(list(self.values(v, name).values()) or [np.nan]) for _, name in snr_metrics]
                ax.plot([s for s, _ in snr_metrics], medians, marker="o", label=v)
            ax.set_xlabel("Gaussian noise SNR (dB)")
            ax.set_ylabel("median test accuracy (%)")
            ax.legend()
            save(fig, "accuracy-vs-snr")

        curves: dict[str, list[list[float]]] = {}
        for run in runs:
            layers = run["summary"].get("smoothness_per_layer")
            if layers:
                curves.setdefault(run["summary"]["variant"], []).append(layers)
        if curves:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for v in [v for v in self.variants if v in curves]:
                ax.plot(np.median(np.array(curves[v]), axis=0), marker="o", label=v)
            ax.set_xlabel("tap (layer)")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylabel("label smoothness tr(YᵀL^mY) (median)")
            ax.set_yscale("log")
            ax.legend()
            save(fig, "smoothness-per-layer")
        return written
