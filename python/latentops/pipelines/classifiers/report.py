"""How `latentops report` shows classifier runs: one column per run (its architecture and variant:
V vanilla, P Parseval, R smoothness-regularized, PR both, GEO geometry targets)."""

from __future__ import annotations

from latentops.pipelines.task import Row, TaskReport

ROWS = [
    Row("test_accuracy", "Test accuracy (%)", lambda v: f"{100 * v:.2f}"),
    Row("test_loss", "Test cross-entropy", lambda v: f"{v:.4f}"),
]
VARIANT_ORDER = ["V", "P", "R", "PR", "GEO"]


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
        name = summary["variant"]
        return VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER)

    def figure_metrics(self, summaries: list[dict]) -> list[tuple[str, str]]:
        return [("test_accuracy", "test accuracy")]
