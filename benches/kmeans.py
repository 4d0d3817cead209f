"""k-means: latentops.kmeans (on all points, and on FAISS's 256 points per centroid) against
faiss.Kmeans, with the inertia over all points; every run checked: its labels are the nearest
centroids and its inertia their squared distances (float64 reference)."""

from __future__ import annotations

import math

import torch

import latentops
from harness import Case, Row, measure
from latentops.reference import nearest_centroid as reference

# The float64 reference search costs N·K·D multiply-adds at ~0.1 TFLOP/s: minutes on the GPU case
# (1M x 20000 x 256). Labels are checked on this many points spread over x; the inertia on all.
LABEL_CHECK_POINTS = 4096


def _check_assignment(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor | None, inertia: float) -> float:
    """The inertia's relative error against the float64 squared distances to the chosen centroids
    (to the nearest ones when a run gives no labels), and labels at the nearest centroids."""
    if labels is None:
        _, sq_dist = reference.nearest_centroid(x, centroids.to(x.dtype))
    else:
        sq_dist = reference.squared_distance(x.double(), centroids.double()[labels])
        some = torch.linspace(0, len(x) - 1, min(len(x), LABEL_CHECK_POINTS), device=x.device).long()
        _, nearest = reference.nearest_centroid(x[some], centroids.to(x.dtype))
        ok = sq_dist[some] <= nearest.double() * (1 + 1e-5) + 1e-6
        assert bool(ok.all()), "labels not at the nearest centroids"
    total = float(sq_dist.double().sum())
    assert math.isclose(inertia, total, rel_tol=1e-4), f"inertia {inertia:.6g} but the centroids give {total:.6g}"
    return abs(inertia - total) / total


def kmeans_case(n: int, k: int, d: int, iters: int, device: str) -> Case:
    case = Case(
        f"k-means N={n} K={k} D={d}, {iters} iterations (inertia over all points)",
        2.0 * n * k * d * iters,
        ["faiss.Kmeans"],
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(k, d, generator=gen) * 3
    x = (centers[torch.randint(0, k, (n,), generator=gen)] + torch.randn(n, d, generator=gen)).to(device)

    for label, sample in [("all points", None), ("256 points per centroid, as FAISS", 256)]:
        measure(
            case,
            f"latentops.kmeans, {label}",
            lambda sample=sample: latentops.kmeans(x, k, iters=iters, tol=0.0, seed=0, max_points_per_centroid=sample),
            device,
            budget_s=0.0,
            check=lambda out: _check_assignment(x, out.centroids, out.labels, out.inertia),
            describe=lambda out, _: f"inertia {out.inertia:.4g}",
        )
    if device != "cpu":
        return case  # FAISS on the GPU machine's CPU would take minutes per run at this size
    try:
        import faiss
    except ImportError:
        case.add(Row("faiss.Kmeans", math.nan, None, None, "not installed"))
        return case
    xn = x.numpy()
    found = {}

    def run_faiss():
        km = faiss.Kmeans(d, k, niter=iters, seed=0, gpu=False)
        km.train(xn)
        found["inertia"] = float(km.index.search(xn, 1)[0].sum())  # over all points, like latentops'
        found["centroids"] = torch.from_numpy(km.centroids)
        return found

    measure(
        case,
        "faiss.Kmeans",
        run_faiss,
        "cpu",
        budget_s=0.0,
        check=lambda out: _check_assignment(x, out["centroids"], None, out["inertia"]),
        describe=lambda out, _: f"inertia {out['inertia']:.4g}",
    )
    return case
