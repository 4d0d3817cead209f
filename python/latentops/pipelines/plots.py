"""PNG figures of a run and of a report: interpolation grids, loss curves, metric bars.

Figures are drawn with matplotlib's object API (matplotlib.figure.Figure, rendered by Agg), never
pyplot: no display, no global backend switch, nothing left open between calls."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure


def tile(decoded: torch.Tensor, rows: int | None = None) -> np.ndarray:
    """(pairs, frames, C, H, W) in [−1, 1] → one (rows·H, frames·W[, 3]) array in [0, 1]."""
    decoded = decoded[:rows] if rows else decoded
    pairs, frames, channels, height, width = decoded.shape
    images = ((decoded.detach().float().cpu().clamp(-1, 1) + 1) * 0.5).numpy()
    grid = images.transpose(0, 3, 1, 4, 2).reshape(pairs * height, frames * width, channels)
    return grid[..., 0] if channels == 1 else grid


def _show(ax, grid: np.ndarray) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_frames(decoded: torch.Tensor, path: Path) -> None:
    """The tiled frames alone, one pixel per pixel (what the report reads back, so written to a
    temporary file and renamed: a crash leaves the previous picture, never half of one)."""
    from matplotlib.image import imsave

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    imsave(tmp, tile(decoded), cmap="gray", vmin=0.0, vmax=1.0, format="png")
    os.replace(tmp, path)


def load_frames(path: Path, rows: int, height: int) -> np.ndarray:
    """The first `rows` pairs of a save_frames PNG, as an array for _show (gray or RGB)."""
    from matplotlib.image import imread

    try:
        image = imread(path)
    except (OSError, ValueError, SyntaxError) as error:  # what Pillow raises on a damaged PNG
        raise ValueError(f"{str(path)!r} is corrupted: {error}") from None
    if image.ndim != 3:
        raise ValueError(f"{str(path)!r} is corrupted: not an RGB(A) picture (shape {image.shape})")
    image = image[: rows * height, :, :3]
    same = np.allclose(image[..., 0], image[..., 1]) and np.allclose(image[..., 0], image[..., 2])
    return image[..., 0] if same else image


def save_interpolation_grid(decoded: torch.Tensor, path: Path, title: str = "") -> None:
    grid = tile(decoded)
    fig = Figure(figsize=(max(4.0, grid.shape[1] / 40), max(2.0, grid.shape[0] / 40) + 0.4))
    ax = fig.add_subplot()
    _show(ax, grid)
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def loss_series(records: list[dict]) -> dict[str, tuple[list, list]]:
    """{name: (steps, values)} of the training records' losses (keys starting with 'loss/')."""
    series: dict[str, tuple[list, list]] = {}
    for record in records:
        if record.get("kind") != "train":
            continue
        for key, value in record.items():
            if key.startswith("loss/"):
                steps, values = series.setdefault(key[5:], ([], []))
                steps.append(record["step"])
                values.append(value)
    return series


def _plot_losses(ax, series: dict, prefix: str = "") -> None:
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=prefix + name)
    _log_scale_if_wide(ax)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)


def _log_scale_if_wide(ax) -> None:
    """A log axis when the curves span more than a decade (and are positive)."""
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() > 10 * values.min():
        ax.set_yscale("log")


def save_loss_curve(records: list[dict], path: Path, title: str = "") -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    _plot_losses(ax, loss_series(records))
    ax.set_title(title or "training losses")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def save_report_figure(runs: list[dict], metrics: list[tuple[str, str]], path: Path, loss_title: str = "") -> None:
    """runs: dicts with name, grid (an array from tile(), or None), records, summary (metrics) and
    loss (the training log to draw, or None). One image strip per run with a grid, a bar chart per
    metric (key, label) and the runs' loss curves together under loss_title (no panel when no run
    has a training log to draw, e.g. compressions)."""
    strips = [run for run in runs if run.get("grid") is not None]
    losses = any(run.get("loss") is not None for run in runs)
    cols = max(1, len(metrics) + losses)
    fig = Figure(figsize=(max(8.0, 3.0 * cols), 1.0 * len(strips) + 3.5))
    grid_spec = fig.add_gridspec(len(strips) + 2, cols, height_ratios=[1.0] * len(strips) + [0.3, 3.0])
    for i, run in enumerate(strips):
        ax = fig.add_subplot(grid_spec[i, :])
        _show(ax, run["grid"])
        ax.set_ylabel(run["name"], rotation=0, ha="right", va="center")
    for j, (key, label) in enumerate(metrics):
        ax = fig.add_subplot(grid_spec[-1, j])
        names = [run["name"] for run in runs]
        values = [run["summary"].get(key, float("nan")) for run in runs]
        ax.bar(range(len(runs)), values, color="tab:blue")
        ax.set_xticks(range(len(runs)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
    if losses:
        ax = fig.add_subplot(grid_spec[-1, -1])
        for run in runs:
            steps, values = loss_series(run["records"]).get(run.get("loss"), ([], []))
            ax.plot(steps, values, label=run["name"])
        _log_scale_if_wide(ax)
        ax.set_xlabel("step")
        ax.set_title(loss_title, fontsize=9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
