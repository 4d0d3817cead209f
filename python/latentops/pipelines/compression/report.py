"""How compressed models are shown: the per-layer table of one compression (report.md), the rows of
`latentops report`, and --grid's table and plot of the metric against ψ, one curve per quantizer."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from latentops.pipelines.task import Row, TaskReport

# sHAM (Marinò et al., ICPR 2020, Table III): VGG19 on CIFAR-10, its three fully connected layers
# pruned 99% and shared by k-means with k = 32, 32, 2, fine-tuned; the conv layers left as they were.
PAPER = "VGG19 on CIFAR-10 (sHAM, ICPR 2020, Table III): accuracy 0.9344 → 0.9358 at ψ 0.006 (FC layers only)"


def value(summary: dict, v: float) -> str:
    """A value of the run's metric: accuracies in percent, anything else to 4 digits."""
    return f"{100 * v:.2f}%" if summary["metric"].endswith("accuracy") else f"{v:.4g}"


def delta(summary: dict, d: float) -> str:
    return f"{100 * d:+.2f} points" if summary["metric"].endswith("accuracy") else f"{d:+.3g}"


def headline(summary: dict) -> str:
    s = summary
    what = s.get("arch") or s.get("model") or "model"
    return (
        f"{what} on {s.get('dataset')}, {s['quantizer']} p = {s['prune']} k = {s['k']}: {s['metric']} "
        f"{value(s, s['source_value'])} → {value(s, s['value'])} ({delta(s, s['delta'])}); "
        f"{s['file_bytes']:,} bytes against {s['dense_bytes']:,} dense float32: ψ {s['psi']:.4f}, "
        f"{s['ratio']:.0f}x smaller (the compressed layers' weights alone: ψ {s['psi_weights']:.4f})"
    )


def paired(summary: dict) -> str:
    t = summary.get("paired_test")
    if not t:
        return ""
    return (
        f"Of the {t['images']} test images, {t['only_source_right']} are right only before compression and "
        f"{t['only_compressed_right']} only after (McNemar's exact test: p = {t['p_value']:.3g})."
    )


def layer_table(summary: dict) -> str:
    """The per-layer table of one compression, with its headline."""
    s = summary
    lines = [
        f"## {s.get('arch') or s.get('model')} on {s.get('dataset')} compressed ({s['source']})",
        "",
        f"{headline(s)}. {paired(s)}".rstrip(),
        "",
        "| layer | shape | pruned | k (levels) | entropy (bits) | bits / non-zero | format | bytes | ψ "
        f"| ψ sHAM formula | Δ {s['metric']}, this layer alone, not fine-tuned | time compressed / dense (ms) |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in s["layers"]:
        times = (
            f"{1e3 * row['time_compressed']:.3f} / {1e3 * row['time_dense']:.3f} ({row['time_rows']} rows)"
            if "time_compressed" in row
            else ""
        )
        kept = row["kept"] / max(1, math.prod(row["shape"]))
        lines.append(
            f"| {row['name']} | {'×'.join(map(str, row['shape']))} | {100 * (1 - kept):.1f}% "
            f"| {row['k']} ({row['levels']}) | {row['entropy']:.2f} | {row['bits_per_nonzero']:.1f} "
            f"| {row['format']} | {row['bytes']:,} "
            f"| {row['psi']:.4f} | {row['psi_paper']:.4f} | {delta(s, row['delta'])} | {times} |"
        )
    lines += [
        "",
        "ψ: the layer's stored bytes over its dense float32 bytes; the sHAM formula is the paper's closed form for "
        "its own format at this size, density and k. The whole model's ψ counts every byte of the file (header, "
        "checksums, biases and normalizations included). Δ alone: the source model with only this layer pruned and "
        "quantized (same mask and quantizer, no fine-tuning), Deep Compression's per-layer sensitivity. Times: "
        f"medians of the layer on its real input, compressed against its decoded dense twin. The paper: {PAPER}.",
        "",
    ]
    return "\n".join(lines)


# Runs that differ only in their seed are repeats of one compression.
SAME_COMPRESSION = (
    "source",
    "quantizer",
    "prune",
    "k",
    "scope",
    "per_layer",
    "compressed_layers",
    "lam",
    "lr",
    "steps",
)


class CompressionReport(TaskReport):
    keys = ("metric", "value", "source_value", "delta", "psi", "ratio", "psi_weights", "quantizer", "prune", "k")

    def section(self, dataset: str) -> str:
        return f"{dataset}, compressed"

    def rows(self, dataset: str) -> list[Row]:
        return [
            Row("source_value", "Metric of the source run", lambda v: f"{v:.4g}"),
            Row("value", "Metric, compressed (from the file)", lambda v: f"{v:.4g}"),
            Row("delta", "Change", lambda v: f"{v:+.4g}"),
            Row("psi", "ψ (file bytes / dense float32 bytes)", lambda v: f"{v:.4f}"),
            Row("ratio", "Compression ratio", lambda v: f"{v:.0f}x"),
            Row("psi_weights", "ψ of the compressed layers' weights", lambda v: f"{v:.4f}"),
            Row("file_bytes", "File bytes", lambda v: f"{v:,}"),
        ]

    def column(self, summary: dict) -> str:
        what = summary.get("arch") or summary.get("model") or "model"
        return f"{what} {summary['quantizer']} p={summary['prune']} k={summary['k']}"

    def column_order(self, summary: dict):
        return (summary["quantizer"], summary["prune"], summary["k"])

    def figure_metrics(self, summaries: list[dict]) -> list[tuple[str, str]]:
        return [("delta", "change of the metric, compressed − source"), ("psi", "ψ: file bytes / dense float32 bytes")]

    def aggregate(self, dataset: str, runs: list[dict], out) -> str | None:
        """Compressions repeated with other seeds (same model, quantizer, p and k): one row each,
        the medians and ranges over seeds, and every seed's McNemar p; None (a column per run)
        when no compression is repeated."""
        groups: dict[tuple, list[dict]] = {}
        for run in runs:
            s = run["summary"]
            groups.setdefault(tuple(repr(s.get(key)) for key in SAME_COMPRESSION), []).append(s)
        if all(len(group) == 1 for group in groups.values()):
            return None
        first = runs[0]["summary"]
        percent = first["metric"].endswith("accuracy")
        scale, units = (100, (" (%)", " (points)")) if percent else (1, ("", ""))

        def number(v: float, sign: str = "") -> str:
            return f"{scale * v:{sign}.2f}" if percent else f"{v:{sign}.4g}"

        lines = [
            f"| compression | seeds | {first['metric']} before{units[0]} | after, median [min, max]{units[0]} "
            f"| change, median [min, max]{units[1]} | ψ, median [min, max] | ratio | McNemar p per seed |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for group in groups.values():
            name = self.column(group[0])
            tests = ", ".join(f"{g['paired_test']['p_value']:.2g}" for g in group if g.get("paired_test"))
            lines.append(
                f"| {name} | {len(group)} | {number(statistics.median(g['source_value'] for g in group))} "
                f"| {_spread([g['value'] for g in group], number)} "
                f"| {_spread([g['delta'] for g in group], lambda d: number(d, '+'))} "
                f"| {_spread([g['psi'] for g in group], lambda v: f'{v:.4f}')} "
                f"| {statistics.median(g['ratio'] for g in group):.0f}x | {tests} |"
            )
        return "\n".join(lines) + "\n"


def _spread(values: list[float], fmt) -> str:
    values = sorted(values)
    return f"{fmt(statistics.median(values))} [{fmt(values[0])}, {fmt(values[-1])}]"


def grid_table(points: list[dict]) -> str:
    """One row per grid point, sorted by quantizer, then ψ."""
    lines = [
        "| quantizer | pruned | k | metric | Δ | ψ (file) | ratio | ψ (weights) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sorted(points, key=lambda s: (s["quantizer"], s["psi"])):
        lines.append(
            f"| {s['quantizer']} | {s['prune']} | {s['k']} | {value(s, s['value'])} | {delta(s, s['delta'])} "
            f"| {s['psi']:.4f} | {s['ratio']:.0f}x | {s['psi_weights']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def plot_grid(points: list[dict], path: Path, title: str) -> None:
    """The metric against ψ (log scale): every point, and per quantizer the curve of the best value
    reached at each ψ or less (its Pareto front); the source run's value as a line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for i, quantizer in enumerate(sorted({s["quantizer"] for s in points})):
        mine = sorted((s for s in points if s["quantizer"] == quantizer), key=lambda s: s["psi"])
        color = f"C{i}"
        axes.scatter([s["psi"] for s in mine], [s["value"] for s in mine], s=14, color=color, alpha=0.5)
        front, best = [], None
        for s in mine:
            sign = 1 if s["higher_is_better"] else -1
            if best is None or sign * s["value"] > sign * best:
                front.append(s)
                best = s["value"]
        axes.plot([s["psi"] for s in front], [s["value"] for s in front], "-", color=color, label=quantizer)
    first = points[0]
    axes.axhline(first["source_value"], color="gray", linestyle="--", label="uncompressed")
    axes.set_xscale("log")
    axes.set_xlabel("ψ = file bytes / dense float32 bytes")
    axes.set_ylabel(first["metric"])
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
