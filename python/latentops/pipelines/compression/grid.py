"""`latentops compress --grid`: one compression per (fraction pruned, k, quantizer), the paper's grid
by default, each point a compress run folder of its own (DIR/p0.95/cws-k32); the points of one
fraction share its pruning stage (DIR/p0.95/prune). Writes DIR/grid.json, grid.md and grid.png (the
metric against ψ, one curve per quantizer)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from latentops.codecs.quantizers import METHODS
from latentops.pipelines import checkpoint
from latentops.pipelines.compression.compress import compress
from latentops.pipelines.compression.config import CompressConfig, _is_fraction, _is_levels, parse_list
from latentops.pipelines.compression.report import grid_table, headline, plot_grid
from latentops.pipelines.options import flag
from latentops.pipelines.run_folder import CONFIG_JSON, METRICS_JSON, read_json_object

GRID_JSON, GRID_MD, GRID_PNG = "grid.json", "grid.md", "grid.png"


def acceptable(summary: dict) -> bool:
    """No worse than the source by more than 1 point of accuracy (or 1% of another metric)."""
    d = summary["delta"] if summary["higher_is_better"] else -summary["delta"]
    tolerance = 0.01 if summary["metric"].endswith("accuracy") else 0.01 * abs(summary["source_value"])
    return d >= -tolerance


def best_points(points: list[dict]) -> dict[str, dict]:
    """Per quantizer, the acceptable point of least ψ."""
    best = {}
    for s in points:
        if acceptable(s) and (s["quantizer"] not in best or s["psi"] < best[s["quantizer"]]["psi"]):
            best[s["quantizer"]] = s
    return best


# What a finished point must share with a resumed grid (the rest are the point's own p, k, quantizer
# and folder, or how it is run).
_SETTINGS = ("run", "scope", "per_layer", "layers", "lam", "lr", "steps", "batch_size", "seed", "backend")


def _check_same_settings(config: CompressConfig, share_dir: Path) -> None:
    saved = read_json_object(share_dir / CONFIG_JSON)
    for name in _SETTINGS:
        if saved.get(name) != getattr(config, name):
            raise ValueError(
                f"--resume: the grid point in {str(share_dir.parent)!r} was made with {flag(name)} "
                f"{saved.get(name)!r}, not {getattr(config, name)!r}; choose another --out"
            )


def run_grid(config: CompressConfig) -> dict:
    from tqdm.auto import tqdm

    prunes = parse_list("--grid-prune", config.grid_prune, float, _is_fraction)
    ks = parse_list("--grid-k", config.grid_k, int, _is_levels)
    quantizers = parse_list("--grid-quantizers", config.grid_quantizers, str, METHODS.__contains__)
    root = Path(config.out)
    if not config.resume and root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"--out {str(root)!r} is not empty; pass --resume to continue its grid or choose another")
    points = []
    combos = [(p, q, k) for p in prunes for q in quantizers for k in ks]
    for p, q, k in tqdm(combos, desc="grid", unit="point", disable=not config.progress):
        stages = root / f"p{p:g}"
        point = stages / f"{q}-k{k}"
        done = point / METRICS_JSON
        if done.is_file() and checkpoint.latest(stages / f"share-{q}-k{k}") is not None:
            _check_same_settings(config, stages / f"share-{q}-k{k}")
            points.append(read_json_object(done))
            continue
        # Every stage resumes: a point's pruning is its fraction's, run by the first point.
        settings = dataclasses.replace(config, prune=p, k=k, quantizer=q, grid=False, out=str(point), resume=True)
        points.append(compress(settings, stages_dir=stages, share_name=f"share-{q}-k{k}"))
    listed = [{key: v for key, v in s.items() if key != "layers"} for s in points]
    checkpoint.write_atomic(root / GRID_JSON, json.dumps(listed, indent=2) + "\n")
    best = best_points(points)
    lines = [f"# Grid: {config.run} compressed", "", grid_table(points), "Least ψ within tolerance, per quantizer:", ""]
    lines += [f"- {headline(s)}" for s in best.values()] or ["- none"]
    (root / GRID_MD).write_text("\n".join(lines) + "\n")
    first = points[0]
    plot_grid(points, root / GRID_PNG, f"{first.get('arch') or first.get('model')} on {first.get('dataset')}")
    return {"grid": str(root), "points": len(points), "best": {q: headline(s) for q, s in best.items()}}
