"""latentops.kmeans against scikit-learn's KMeans on real data shipped with scikit-learn: the inertia
of both, recomputed in float64 from centroids and labels, per dataset, n_init and seed.

    python benches/kmeans_quality.py --seeds 0-4 --n-init 1,4,10
    python benches/kmeans_quality.py --before old_kmeans.py   # e.g. `git show REV:python/latentops/kmeans.py`

Prints a markdown table (inertia and seconds per fit) and how many cases end more than 1e-6 above
scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch
from sklearn import datasets
from sklearn.cluster import KMeans

from latentops.kmeans import kmeans


def _standardized(data: np.ndarray) -> np.ndarray:
    return ((data - data.mean(0)) / data.std(0)).astype(np.float32)


DATA = {
    "digits k=10": (lambda: datasets.load_digits().data.astype(np.float32), 10),
    "wine (standardized) k=3": (lambda: _standardized(datasets.load_wine().data), 3),
    "breast_cancer (standardized) k=2": (lambda: _standardized(datasets.load_breast_cancer().data), 2),
    "iris k=3": (lambda: datasets.load_iris().data.astype(np.float32), 3),
}


def _inertia64(x: np.ndarray, centroids, labels) -> float:
    centroids = np.asarray(centroids, dtype=np.float64)
    return float(((x.astype(np.float64) - centroids[np.asarray(labels)]) ** 2).sum())


def _timed(fit, *args, **kwargs):
    """(fit(*args, **kwargs), its wall seconds); GPU work is finished before the clock stops."""
    start = time.perf_counter()
    result = fit(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4", help="first-last")
    parser.add_argument("--n-init", default="1,4,10")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--before", help="path of an older kmeans.py to add as a column")
    args = parser.parse_args()
    first, last = map(int, args.seeds.split("-"))
    n_inits = [int(v) for v in args.n_init.split(",")]
    before = None
    if args.before:
        spec = importlib.util.spec_from_file_location("kmeans_before", args.before)
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)

    columns = ["data", "n_init", "seed", "scikit-learn", "s"]
    if before is not None:
        columns += ["before", "before / sk − 1", "s"]
    columns += ["latentops", "latentops / sk − 1", "s"]
    print("| " + " | ".join(columns) + " |")
    print("| --- | " + " | ".join(["---:"] * (len(columns) - 1)) + " |")
    worse = {"before": 0, "latentops": 0}
    cases = 0
    for name, (load, k) in DATA.items():
        x = load()
        xt = torch.from_numpy(x).to(args.device)
        for n_init in n_inits:
            for seed in range(first, last + 1):
                fitted, seconds = _timed(KMeans(k, n_init=n_init, random_state=seed).fit, x)
                theirs = _inertia64(x, fitted.cluster_centers_, fitted.labels_)
                row = [name, str(n_init), str(seed), f"{theirs:,.3f}", f"{seconds:.3f}"]
                results = {}
                if before is not None:
                    results["before"] = _timed(before.kmeans, xt, k, n_init=n_init, seed=seed)
                results["latentops"] = _timed(kmeans, xt, k, n_init=n_init, seed=seed)
                for key, (result, seconds) in results.items():
                    ours = _inertia64(x, result.centroids.cpu().numpy(), result.labels.cpu().numpy())
                    worse[key] += ours > theirs * (1 + 1e-6)
                    row += [f"{ours:,.3f}", f"{ours / theirs - 1:+.2e}", f"{seconds:.3f}"]
                cases += 1
                print("| " + " | ".join(row) + " |", flush=True)
    print()
    for key in (["before"] if before else []) + ["latentops"]:
        print(f"{key}: more than 1e-6 above scikit-learn in {worse[key]} of {cases} cases")


if __name__ == "__main__":
    main()
